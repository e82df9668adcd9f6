// Kafka 4.1.2's Java producer sending one batch with invalid records, for
// tests/integration/test_record_errors.py (run with the JDK's source launcher).
//
// Usage: RecordErrors <bootstrap> <topic> <keyless|future>
//   keyless: 100 records to a compacted topic, every tenth (3, 13, ...) without a key;
//   future:  20 records, those at index 4 and 11 stamped an hour ahead.
// Prints one line per distinct outcome, "outcome <indexes comma-separated> <exception class>: <message>"
// (or "ok"), so the test sees which records the client names as the culprits and what it says.

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class RecordErrors {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], mode = args[2];
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "1000");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, "1048576");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        p.put(ProducerConfig.RETRIES_CONFIG, "0");
        Map<String, List<Integer>> outcomes = new TreeMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            // A first record alone, so the producer is connected and the rest go in one batch.
            producer.send(new ProducerRecord<>(topic, 0, "first", "first")).get();
            int count = mode.equals("keyless") ? 100 : 20;
            long now = System.currentTimeMillis();
            List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                final int index = i;
                String key = mode.equals("keyless") && i % 10 == 3 ? null : "k" + i;
                long ts = mode.equals("future") && (i == 4 || i == 11) ? now + 3_600_000L : now;
                sent.add(producer.send(new ProducerRecord<>(topic, 0, ts, key, "v" + i), (md, e) -> {
                    String what = e == null ? "ok" : e.getClass().getSimpleName() + ": " + e.getMessage();
                    synchronized (outcomes) {
                        outcomes.computeIfAbsent(what, k -> new ArrayList<>()).add(index);
                    }
                }));
            }
            producer.flush();
        }
        for (Map.Entry<String, List<Integer>> e : outcomes.entrySet()) {
            StringBuilder idx = new StringBuilder();
            for (int i : e.getValue()) idx.append(idx.length() == 0 ? "" : ",").append(i);
            System.out.println("outcome " + idx + " " + e.getKey().replace('\n', ' '));
        }
    }
}
