// Prints golden __transaction_state record bytes produced by Apache Kafka's own generated
// codec (kafka-transaction-coordinator 4.1.2), so crates/txn/src/records.rs can be checked
// byte for byte. Run once by hand; the output is pasted into records.rs's tests:
//   CP=$(ls ../../../.cache/kafka-libs/*.jar | tr '\n' ':')
//   java -cp "$CP" GoldenTxnRecords.java
import java.util.List;
import org.apache.kafka.common.protocol.MessageUtil;
import org.apache.kafka.coordinator.transaction.generated.TransactionLogKey;
import org.apache.kafka.coordinator.transaction.generated.TransactionLogValue;

public class GoldenTxnRecords {
    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) s.append(String.format("%02x", x));
        return s.toString();
    }

    static TransactionLogValue value(byte status, List<TransactionLogValue.PartitionsSchema> parts) {
        return new TransactionLogValue()
            .setProducerId(1001L)
            .setProducerEpoch((short) 7)
            .setTransactionTimeoutMs(60000)
            .setTransactionStatus(status)
            .setTransactionPartitions(parts)
            .setTransactionLastUpdateTimestampMs(1700000000123L)
            .setTransactionStartTimestampMs(1700000000001L);
    }

    public static void main(String[] args) {
        System.out.println("key txn-1 " + hex(MessageUtil.toVersionPrefixedBytes((short) 0,
            new TransactionLogKey().setTransactionalId("txn-1"))));
        List<TransactionLogValue.PartitionsSchema> parts = List.of(
            new TransactionLogValue.PartitionsSchema().setTopic("orders").setPartitionIds(List.of(0, 3)),
            new TransactionLogValue.PartitionsSchema().setTopic("__consumer_offsets").setPartitionIds(List.of(12)));
        // Ongoing with two topics, v0 and v1 (v1 as Kafka 4.1 writes it for a TV2 client:
        // only ClientTransactionVersion among the tagged fields).
        System.out.println("v0 ongoing " + hex(MessageUtil.toVersionPrefixedBytes((short) 0, value((byte) 1, parts))));
        System.out.println("v1 ongoing tv2 " + hex(MessageUtil.toVersionPrefixedBytes((short) 1,
            value((byte) 1, parts).setClientTransactionVersion((short) 2))));
        // Empty: null partitions, TV0 (no tagged fields at all).
        System.out.println("v1 empty " + hex(MessageUtil.toVersionPrefixedBytes((short) 1, value((byte) 0, null))));
        System.out.println("v0 empty " + hex(MessageUtil.toVersionPrefixedBytes((short) 0, value((byte) 0, null))));
        // PrepareCommit with every tagged field set (previous and next producer ids).
        System.out.println("v1 prepare all tags " + hex(MessageUtil.toVersionPrefixedBytes((short) 1,
            value((byte) 2, List.of(parts.get(0))).setPreviousProducerId(1000L).setNextProducerId(2002L)
                .setClientTransactionVersion((short) 2))));
        // CompleteCommit: empty (not null) partition list.
        System.out.println("v1 complete " + hex(MessageUtil.toVersionPrefixedBytes((short) 1,
            value((byte) 4, List.of()).setClientTransactionVersion((short) 2))));
    }
}
