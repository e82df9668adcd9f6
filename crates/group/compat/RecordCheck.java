// Decodes the records printed by `cargo run -p josefine-group --example emit_records` with
// Kafka's own generated record classes, re-encodes each at the same version and checks the
// bytes are identical: our __consumer_offsets layout is Kafka's. Also prints records encoded
// by Kafka at the highest versions it knows, for the Rust decoder to read back.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;

import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.coordinator.group.generated.GroupMetadataKey;
import org.apache.kafka.coordinator.group.generated.GroupMetadataValue;
import org.apache.kafka.coordinator.group.generated.OffsetCommitKey;
import org.apache.kafka.coordinator.group.generated.OffsetCommitValue;

public class RecordCheck {
    static byte[] unhex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return out;
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    /** Version prefix + message body, as records in __consumer_offsets are laid out. */
    static byte[] encode(ApiMessage m, short version) {
        ObjectSerializationCache cache = new ObjectSerializationCache();
        int size = m.size(cache, version);
        ByteBuffer buf = ByteBuffer.allocate(2 + size);
        buf.putShort(version);
        m.write(new ByteBufferAccessor(buf), cache, version);
        return buf.array();
    }

    static void check(String what, byte[] ours, ApiMessage decoded, short version) {
        byte[] kafka = encode(decoded, version);
        if (!Arrays.equals(ours, kafka)) {
            System.out.println("MISMATCH " + what + " ours=" + hex(ours) + " kafka=" + hex(kafka));
            System.exit(1);
        }
        System.out.println("OK " + what + " v" + version + " " + decoded);
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        int checked = 0;
        while ((line = in.readLine()) != null) {
            String[] parts = line.trim().split(" ");
            byte[] key = unhex(parts[1]);
            ByteBuffer kb = ByteBuffer.wrap(key);
            short kv = kb.getShort();
            if (parts[0].equals("offset")) {
                check("OffsetCommitKey", key, new OffsetCommitKey(new ByteBufferAccessor(kb), kv), kv);
                if (!parts[2].equals("-")) {
                    byte[] value = unhex(parts[2]);
                    ByteBuffer vb = ByteBuffer.wrap(value);
                    short vv = vb.getShort();
                    check("OffsetCommitValue", value, new OffsetCommitValue(new ByteBufferAccessor(vb), vv), vv);
                }
            } else {
                check("GroupMetadataKey", key, new GroupMetadataKey(new ByteBufferAccessor(kb), kv), kv);
                if (!parts[2].equals("-")) {
                    byte[] value = unhex(parts[2]);
                    ByteBuffer vb = ByteBuffer.wrap(value);
                    short vv = vb.getShort();
                    check("GroupMetadataValue", value, new GroupMetadataValue(new ByteBufferAccessor(vb), vv), vv);
                }
            }
            checked++;
        }
        System.out.println("checked " + checked + " records");
        // Kafka-encoded values at the newest versions, for the Rust side to decode.
        short ov = OffsetCommitValue.HIGHEST_SUPPORTED_VERSION;
        OffsetCommitValue o = new OffsetCommitValue().setOffset(77).setLeaderEpoch(4)
            .setMetadata("kafka").setCommitTimestamp(1234567);
        if (ov >= 4) o.setTopicId(Uuid.randomUuid());
        System.out.println("KAFKA offset_value v" + ov + " " + hex(encode(o, ov)));
        short gv = GroupMetadataValue.HIGHEST_SUPPORTED_VERSION;
        GroupMetadataValue g = new GroupMetadataValue().setProtocolType("consumer").setGeneration(9)
            .setProtocol("range").setLeader("m").setCurrentStateTimestamp(555)
            .setMembers(List.of(new GroupMetadataValue.MemberMetadata().setMemberId("m")
                .setGroupInstanceId("inst").setClientId("cid").setClientHost("/h")
                .setRebalanceTimeout(3000).setSessionTimeout(6000)
                .setSubscription(new byte[] {1, 2}).setAssignment(new byte[] {3})));
        System.out.println("KAFKA group_value v" + gv + " " + hex(encode(g, gv)));
    }
}
