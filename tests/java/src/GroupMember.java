/**
 * One consumer-group member on Kafka's own Java consumer, driven by the integration tests
 * (tests/integration/test_groups_java.py) through stdin and stdout.
 *
 * <p>Usage: {@code java -cp 'libs/*:classes' GroupMember BOOTSTRAP GROUP TOPIC [key=value...]}
 * where each key=value is a consumer setting (e.g. partition.assignment.strategy). It
 * subscribes, and prints one line per event on stdout: {@code ASSIGNED p,p}, {@code REVOKED p,p},
 * {@code LOST p,p} (from the rebalance listener, incremental under the cooperative protocol),
 * {@code RECORD partition offset value}, {@code COMMIT-RETRY} when a commit must wait for a
 * rebalance to finish, then {@code CLOSED} after leaving the group. The line {@code close} on
 * stdin, or its end, makes it close (commit first, then leave); {@code pause MS} makes it stop
 * polling for MS milliseconds ({@code PAUSED}, then {@code RESUMED}) while its heartbeat thread
 * keeps the session alive, as a slow application does. Logging goes to stderr.
 *
 * <p>Every batch is committed (commitSync) before the next poll, the only place rebalances
 * run, so a correct coordinator hands each record to the group once. Under the cooperative
 * protocol a commit during a rebalance is refused (RebalanceInProgressException); the
 * offsets are kept and committed after the next poll or in onPartitionsRevoked.
 */
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.StringDeserializer;

public final class GroupMember {
    private static final Duration POLL_TIMEOUT = Duration.ofMillis(200);

    /** Commands from stdin; "close" is also queued at its end. Bounded: the tests send few. */
    private static final BlockingQueue<String> COMMANDS = new ArrayBlockingQueue<>(64);

    private static synchronized void emit(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static String partitions(Collection<TopicPartition> parts) {
        return parts.stream().map(tp -> Integer.toString(tp.partition())).sorted().collect(Collectors.joining(","));
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: GroupMember BOOTSTRAP GROUP TOPIC [key=value...]");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, args[1]);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        for (int i = 3; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        Thread stdin = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = in.readLine()) != null) {
                    COMMANDS.put(line.trim());
                }
            } catch (Exception e) {
                // Treat a broken stdin like its end.
            }
            try {
                COMMANDS.put("close");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        stdin.setDaemon(true);
        stdin.start();

        Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(args[2]), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    // Commit what we consumed of them before they move on.
                    if (!pending.isEmpty()) {
                        consumer.commitSync(pending);
                        pending.clear();
                    }
                    emit("REVOKED " + partitions(parts));
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    emit("ASSIGNED " + partitions(parts));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> parts) {
                    pending.keySet().removeAll(parts);
                    emit("LOST " + partitions(parts));
                }
            });
            while (true) {
                String command = COMMANDS.poll();
                if ("close".equals(command)) {
                    break;
                }
                if (command != null && command.startsWith("pause ")) {
                    emit("PAUSED");
                    Thread.sleep(Long.parseLong(command.substring("pause ".length())));
                    emit("RESUMED");
                }
                ConsumerRecords<String, String> records = consumer.poll(POLL_TIMEOUT);
                for (ConsumerRecord<String, String> r : records) {
                    emit("RECORD " + r.partition() + " " + r.offset() + " " + r.value());
                    pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                if (!pending.isEmpty()) {
                    try {
                        consumer.commitSync(pending);
                        pending.clear();
                    } catch (RebalanceInProgressException e) {
                        emit("COMMIT-RETRY");
                    }
                }
            }
            if (!pending.isEmpty()) {
                consumer.commitSync(pending);
            }
        }
        emit("CLOSED");
    }
}
