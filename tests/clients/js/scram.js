// kafkajs over SASL_SSL with SCRAM: produce 5 records, read them back in a group.
// Usage: node scram.js <bootstrap> <mechanism> <user> <password> <ca.pem> <topic>
// Prints "PASS kafkajs scram" or "FAIL: ..." (exit 1).
const fs = require("fs");
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, mechanism, username, password, ca, topic] = process.argv.slice(2);

async function main() {
  const kafka = new Kafka({
    clientId: "scram-test",
    brokers: [bootstrap],
    ssl: { ca: [fs.readFileSync(ca, "utf-8")], rejectUnauthorized: true, checkServerIdentity: () => undefined },
    sasl: { mechanism: mechanism.toLowerCase(), username, password },
    logLevel: logLevel.NOTHING,
  });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: [0, 1, 2, 3, 4].map((i) => ({ value: `js-${i}` })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `g-${topic}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${got.length} records`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString());
        if (got.length === 5) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  if (got.join(",") !== "js-0,js-1,js-2,js-3,js-4") throw new Error(`read ${got}`);
  console.log("PASS kafkajs scram");
}

main().catch((e) => {
  console.log(`FAIL: ${e.message}`);
  process.exit(1);
});
