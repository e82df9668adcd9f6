// Kafka 4.1.2's Java clients against a broker, for tests/integration/test_transactions_java.py.
//
//   commit-abort BOOTSTRAP TOPIC TXID GROUP : one transaction committed (10 records and the
//       group's offset 10 of TOPIC-in through sendOffsetsToTransaction), one aborted (5 records,
//       offset 15), one committed (4 records); then prints "committed <values>" (a
//       read_committed consumer), "all <values>" (read_uncommitted) and "offset <n>" (the
//       group's committed offset of TOPIC-in partition 0).
//   fence BOOTSTRAP TOPIC TXID : a second producer with the same transactional.id fences the
//       first; prints "fenced <exception class>" for the first's commit and "committed
//       <values>".
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnClient {
    static KafkaProducer<String, String> producer(String bootstrap, String txid) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", txid);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static List<String> read(String bootstrap, String topic, String isolation) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("isolation.level", isolation);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp)).get(tp);
            long deadline = System.currentTimeMillis() + 30_000;
            while (c.position(tp) < end && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                    out.add(r.value());
                }
            }
        }
        return out;
    }

    static void send(KafkaProducer<String, String> p, String topic, String prefix, int n) throws Exception {
        for (int i = 0; i < n; i++) {
            p.send(new ProducerRecord<>(topic, 0, null, prefix + i)).get();
        }
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0], bootstrap = args[1], topic = args[2], txid = args[3];
        if (mode.equals("commit-abort")) {
            String group = args[4];
            TopicPartition in = new TopicPartition(topic + "-in", 0);
            ConsumerGroupMetadata meta = new ConsumerGroupMetadata(group);
            try (KafkaProducer<String, String> p = producer(bootstrap, txid)) {
                p.initTransactions();
                p.beginTransaction();
                send(p, topic, "c1-", 10);
                p.sendOffsetsToTransaction(Map.of(in, new OffsetAndMetadata(10)), meta);
                p.commitTransaction();
                p.beginTransaction();
                send(p, topic, "ab-", 5);
                p.sendOffsetsToTransaction(Map.of(in, new OffsetAndMetadata(15)), meta);
                p.abortTransaction();
                p.beginTransaction();
                send(p, topic, "c2-", 4);
                p.commitTransaction();
            }
            System.out.println("committed " + String.join(",", read(bootstrap, topic, "read_committed")));
            System.out.println("all " + String.join(",", read(bootstrap, topic, "read_uncommitted")));
            Properties cp = new Properties();
            cp.put("bootstrap.servers", bootstrap);
            cp.put("group.id", group);
            cp.put("key.deserializer", StringDeserializer.class.getName());
            cp.put("value.deserializer", StringDeserializer.class.getName());
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
                OffsetAndMetadata o = c.committed(Set.of(in), Duration.ofSeconds(30)).get(in);
                System.out.println("offset " + (o == null ? -1 : o.offset()));
            }
        } else if (mode.equals("fence")) {
            KafkaProducer<String, String> zombie = producer(bootstrap, txid);
            zombie.initTransactions();
            zombie.beginTransaction();
            send(zombie, topic, "zombie-", 1);
            try (KafkaProducer<String, String> fresh = producer(bootstrap, txid)) {
                fresh.initTransactions();
                fresh.beginTransaction();
                send(fresh, topic, "fresh-", 1);
                fresh.commitTransaction();
            }
            try {
                zombie.commitTransaction();
                System.out.println("fenced none");
            } catch (Exception e) {
                System.out.println("fenced " + e.getClass().getSimpleName());
            }
            zombie.close(Duration.ZERO);
            System.out.println("committed " + String.join(",", read(bootstrap, topic, "read_committed")));
        }
    }
}
