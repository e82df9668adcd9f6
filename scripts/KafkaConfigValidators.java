// Prints every Apache Kafka broker config's validator as Kafka 4.1 defines it (ConfigDef of
// AbstractKafkaConfig): "<name>\t<validator class>\t<validator text>" per line, sorted by name.
// Run by scripts/gen-kafka-broker-configs with the JDK's source launcher and the jars of
// .cache/kafka-libs; DescribeConfigs does not report validators, so this is where Josefine's
// ranges for Kafka's store-only configs come from.

import java.util.Map;
import java.util.TreeMap;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.server.config.AbstractKafkaConfig;

public class KafkaConfigValidators {
    public static void main(String[] args) {
        Map<String, ConfigDef.ConfigKey> keys = new TreeMap<>(AbstractKafkaConfig.CONFIG_DEF.configKeys());
        for (Map.Entry<String, ConfigDef.ConfigKey> e : keys.entrySet()) {
            ConfigDef.Validator v = e.getValue().validator;
            System.out.println(e.getKey() + "\t" + (v == null ? "" : v.getClass().getSimpleName())
                + "\t" + (v == null ? "" : v.toString()));
        }
    }
}
