#!/bin/sh
# Cross-checks our __consumer_offsets record bytes against Kafka's own record classes.
# Needs a JDK and the Kafka 4.1 jars (kafka-clients, kafka-group-coordinator,
# kafka-coordinator-common, kafka-server-common) in $KAFKA_LIBS.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
libs=${KAFKA_LIBS:-/work/main/.cache/kafka-libs}
out=${TMPDIR:-/tmp}/josefine-record-check
mkdir -p "$out"
cp=$(ls "$libs"/*.jar | tr '\n' ':')
javac -d "$out" -cp "$cp" "$here/RecordCheck.java"
cargo run -q -p josefine-group --example emit_records | java -cp "$out:$cp" RecordCheck
