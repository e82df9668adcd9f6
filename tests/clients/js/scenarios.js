// kafkajs scenarios run by tests/integration/test_kafkajs.py against one broker (Josefine or
// the reference Kafka).
//
// Owns: producing, consuming and administering through kafkajs, and checking what comes back.
// Prints "ok: ..." lines and "PASS kafkajs <scenario>" and exits 0 only when every check passed;
// any mismatch prints "FAIL: <what>" and exits 1. Must never decide pass/fail on timing:
// deadlines only bound how long it waits for records that should arrive.
//
// Usage: node scenarios.js <produce|group|admin> <host:port> <topic>
'use strict'

const { Kafka, AssignerProtocol, CompressionTypes, CompressionCodecs, ConfigResourceTypes, logLevel } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')

// kafkajs has gzip built in; snappy comes from kafkajs-snappy (pure JS). lz4/zstd codecs need
// native builds, so they are left out: kafkajs itself supports neither.
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy }

// Bounds every wait for records, assignments or metadata: generous for a busy 2-core box and
// Kafka's group join delay.
const WAIT_TIMEOUT_MS = 90000
// Scenario 1's record count (spread over the codecs, 3 partitions).
const PRODUCE_RECORDS = 1000
// Scenario 2's partition count (two members own two each).
const GROUP_PARTITIONS = 4

const started = Date.now()
const ok = (msg) => console.log(`ok: ${msg} [${Date.now() - started}ms]`)
class Failure extends Error {}
const fail = (msg) => { throw new Failure(msg) }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (what, cond) {
  const deadline = Date.now() + WAIT_TIMEOUT_MS
  while (!(await cond())) {
    if (Date.now() > deadline) fail(`timed out after ${WAIT_TIMEOUT_MS} ms waiting for ${what}`)
    await sleep(50)
  }
}

function kafkaFor (broker, clientId) {
  return new Kafka({ clientId, brokers: [broker], logLevel: logLevel.NOTHING, retry: { retries: 10 } })
}

// Record i of scenario 1: keys repeat (the same key must always land in the same partition);
// headers name the record and its codec, one is empty and one key repeats.
function produced (i, codec) {
  return {
    key: `key-${i % 37}`,
    value: `value ${i} codec ${codec} ${'x'.repeat(i % 50)}`,
    headers: { index: [String(i), 'again'], codec, empty: '' }
  }
}

function codecFor (i) {
  const names = Object.keys(CODECS)
  return names[Math.floor(i / Math.ceil(PRODUCE_RECORDS / names.length))]
}

// Header values as strings; a repeated key reads back as an array.
function headerStrings (headers) {
  const out = {}
  for (const [k, v] of Object.entries(headers || {})) {
    out[k] = Array.isArray(v) ? v.map(String) : String(v)
  }
  return out
}

async function createTopic (admin, topic, numPartitions, configEntries = []) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    waitForLeaders: true,
    timeout: WAIT_TIMEOUT_MS
  })
  if (created !== true) fail(`createTopics(${topic}) returned ${created}`)
}

async function produceScenario (broker, topic) {
  const kafka = kafkaFor(broker, 'kafkajs-produce')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, topic, 3)
  for (const codec of Object.keys(CODECS)) {
    // kafkajs' idempotent producer requires maxInFlightRequests 1 and acks=all.
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
    await producer.connect()
    const messages = []
    for (let i = 0; i < PRODUCE_RECORDS; i++) {
      if (codecFor(i) === codec) messages.push(produced(i, codec))
    }
    for (let at = 0; at < messages.length; at += 100) {
      await producer.send({ topic, acks: -1, compression: CODECS[codec], messages: messages.slice(at, at + 100) })
    }
    await producer.disconnect()
  }
  ok(`produced ${PRODUCE_RECORDS} records (idempotent, acks=all) with ${Object.keys(CODECS)}`)

  // kafkajs has no assign mode: a fresh group reading from the beginning, committing nothing.
  const consumer = kafka.consumer({ groupId: `${topic}-reader`, sessionTimeout: 6000, heartbeatInterval: 1000 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const got = []
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      got.push({ partition, offset: Number(message.offset), key: message.key && message.key.toString(), value: message.value.toString(), headers: headerStrings(message.headers) })
    }
  })
  await waitFor(`${PRODUCE_RECORDS} records`, () => got.length >= PRODUCE_RECORDS)
  await sleep(500) // anything more is a duplicate
  await consumer.disconnect()
  await admin.disconnect()
  checkReadBack(got)
}

function checkReadBack (got) {
  if (got.length !== PRODUCE_RECORDS) fail(`read ${got.length} records, want ${PRODUCE_RECORDS}`)
  const seen = new Set()
  const keyPartition = new Map()
  const lastIndex = new Map()
  const nextOffset = new Map()
  for (const g of got) {
    const i = Number((g.headers.index || [])[0])
    if (!Number.isInteger(i) || i < 0 || i >= PRODUCE_RECORDS) fail(`record at ${g.partition}/${g.offset} has no index header: ${JSON.stringify(g)}`)
    if (seen.has(i)) fail(`record ${i} read twice`)
    seen.add(i)
    const want = produced(i, codecFor(i))
    if (g.key !== want.key || g.value !== want.value || JSON.stringify(g.headers) !== JSON.stringify(headerStrings(want.headers))) {
      fail(`record ${i} differs:\n got  ${JSON.stringify(g)}\n want ${JSON.stringify(want)}`)
    }
    if (keyPartition.has(g.key) && keyPartition.get(g.key) !== g.partition) fail(`key ${g.key} in partitions ${keyPartition.get(g.key)} and ${g.partition}`)
    keyPartition.set(g.key, g.partition)
    if (lastIndex.has(g.partition) && lastIndex.get(g.partition) > i) fail(`partition ${g.partition}: record ${i} after ${lastIndex.get(g.partition)}`)
    lastIndex.set(g.partition, i)
    const next = nextOffset.get(g.partition) || 0
    if (g.offset !== next) fail(`partition ${g.partition}: offset ${g.offset}, want ${next} (dense from 0)`)
    nextOffset.set(g.partition, next + 1)
  }
  if (lastIndex.size !== 3) fail(`records landed in ${lastIndex.size} partitions, want 3`)
  const counts = [...nextOffset.entries()].sort((a, b) => a[0] - b[0]).map(([p, n]) => `p${p}=${n}`).join(' ')
  ok(`${got.length} records read back exactly once, identical, in order per partition (${counts}), codecs ${Object.keys(CODECS)}`)
}

// Scenario 2 bookkeeping: who read which numbered record ("p:seq"), and each member's latest
// assignment (kafkajs is eager: a member's whole assignment arrives with each GROUP_JOIN).
const groupValue = (p, seq) => `${p}:${seq}`

class Group {
  constructor () {
    this.reads = new Map()
    this.assignment = new Map()
    this.memberIds = new Map()
  }

  read (member, partition, offset, value) {
    if (value !== groupValue(partition, offset)) fail(`member ${member} read ${value} at ${partition}/${offset}`)
    if (!this.reads.has(value)) this.reads.set(value, [])
    this.reads.get(value).push(member)
  }

  // Every partition owned by exactly one of `members`, the same number each.
  balanced (...members) {
    const owned = members.map((m) => this.assignment.get(m) || [])
    const all = owned.flat()
    return all.length === GROUP_PARTITIONS && new Set(all).size === GROUP_PARTITIONS &&
      owned.every((ps) => ps.length === GROUP_PARTITIONS / members.length)
  }

  describe () {
    return [...this.assignment.entries()].map(([m, ps]) => `${m}=[${ps}]`).join(' ')
  }

  checkExactlyOnce (ends) {
    let total = 0
    for (const [p, end] of ends.entries()) {
      for (let seq = 0; seq < end; seq++) {
        const who = this.reads.get(groupValue(p, seq)) || []
        if (who.length !== 1) fail(`record ${groupValue(p, seq)} read ${who.length} times (by ${who}), want exactly once`)
      }
      total += end
    }
    if (total !== this.reads.size) fail(`read ${this.reads.size} distinct records, produced ${total}`)
  }
}

// One member: commits what each batch it read before the next heartbeat/rejoin can happen, so
// the group reads every record exactly once across rebalances.
async function startMember (kafka, topic, groupId, name, group) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 1000, rebalanceTimeout: 30000 })
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    group.assignment.set(name, [...(e.payload.memberAssignment[topic] || [])].sort())
    group.memberIds.set(e.payload.memberId, name)
  })
  consumer.on(consumer.events.CRASH, (e) => { group.crash = `${name}: ${e.payload.error}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    // resolveOffset moves the fetch position; commitOffsets makes it the group's.
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
      let last = null
      for (const m of batch.messages) {
        if (!isRunning() || isStale()) break
        group.read(name, batch.partition, Number(m.offset), m.value.toString())
        resolveOffset(m.offset)
        last = Number(m.offset)
      }
      if (last !== null) {
        await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(last + 1) }])
      }
    }
  })
  return consumer
}

// Waits until describeGroups shows the group Stable with exactly `members` and the assignments
// they were told (a rebalance may still be settling when it is first asked).
async function checkDescribed (admin, groupId, topic, group, members) {
  let last = ''
  await waitFor('describeGroups to agree with the members', async () => {
    const { groups: [g] } = await admin.describeGroups([groupId])
    const described = {}
    for (const m of g.members) {
      const decoded = AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
      const name = group.memberIds.get(m.memberId) || m.memberId
      described[name] = [...((decoded && decoded.assignment[topic]) || [])].sort()
    }
    const want = Object.fromEntries(members.map((m) => [m, group.assignment.get(m)]))
    last = `state ${g.state} assigned ${JSON.stringify(described)}, members see ${JSON.stringify(want)}`
    const sorted = (o) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]))
    return g.state === 'Stable' && sorted(described) === sorted(want)
  })
  ok(`describeGroups: ${last}`)
}

async function produceNumbered (producer, topic, ends, count) {
  const byPartition = []
  for (let p = 0; p < GROUP_PARTITIONS; p++) {
    const messages = []
    for (let i = 0; i < count; i++) {
      const seq = ends.get(p) || 0
      messages.push({ partition: p, value: groupValue(p, seq) })
      ends.set(p, seq + 1)
    }
    byPartition.push(...messages)
  }
  await producer.send({ topic, acks: -1, messages: byPartition })
}

async function groupScenario (broker, topic) {
  const kafka = kafkaFor(broker, 'kafkajs-group')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, topic, GROUP_PARTITIONS)
  const producer = kafka.producer()
  await producer.connect()
  const groupId = `${topic}-group`
  const group = new Group()
  const ends = new Map()
  const noCrash = (f) => () => { if (group.crash) fail(`member crashed: ${group.crash}`); return f() }

  const a = await startMember(kafka, topic, groupId, 'a', group)
  const b = await startMember(kafka, topic, groupId, 'b', group)
  await waitFor('a and b to own 2 partitions each', noCrash(() => group.balanced('a', 'b')))
  ok(`two members, each partition owned once: ${group.describe()}`)
  await checkDescribed(admin, groupId, topic, group, ['a', 'b'])
  await produceNumbered(producer, topic, ends, 50)
  await waitFor('200 records read', noCrash(() => group.reads.size === 200))
  group.checkExactlyOnce(ends)
  ok('first 200 records read exactly once')

  await b.disconnect()
  group.assignment.delete('b')
  await waitFor('a to own all partitions after b left', noCrash(() => group.balanced('a')))
  await produceNumbered(producer, topic, ends, 20)
  const b2 = await startMember(kafka, topic, groupId, 'b2', group)
  await waitFor('a and restarted b2 to own 2 partitions each', noCrash(() => group.balanced('a', 'b2')))
  await checkDescribed(admin, groupId, topic, group, ['a', 'b2'])
  await produceNumbered(producer, topic, ends, 30)
  await waitFor('all 400 records read', noCrash(() => group.reads.size === 400))
  await sleep(1000) // a late duplicate would show up here
  group.checkExactlyOnce(ends)
  const b2Reads = [...group.reads.values()].filter((who) => who[0] === 'b2').length
  if (b2Reads === 0) fail('restarted member b2 read nothing')
  ok(`after b restarted as b2: all 400 records read exactly once (b2 read ${b2Reads})`)
  await a.disconnect()
  await b2.disconnect()
  await producer.disconnect()

  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] })
  for (const [p, end] of ends.entries()) {
    const c = committed.partitions.find((x) => x.partition === p)
    if (!c || Number(c.offset) !== end) fail(`committed offset of partition ${p}: ${JSON.stringify(c)}, want ${end}`)
  }
  ok(`committed offsets equal the log ends ${JSON.stringify([...ends.entries()])}`)
  await admin.disconnect()
}

async function adminScenario (broker, topic) {
  const kafka = kafkaFor(broker, 'kafkajs-admin')
  const admin = kafka.admin()
  await admin.connect()
  const retention = '3600000'
  await createTopic(admin, topic, 2, [{ name: 'retention.ms', value: retention }])
  // kafkajs resolves false (not an error) when the topic already exists.
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] })
  if (again !== false) fail(`second createTopics returned ${again}, want false (already exists)`)
  ok(`created ${topic} (2 partitions, retention.ms=${retention}); second create returned false`)

  // partitionCount is -1 while the topic is unknown (Kafka's metadata can lag a change).
  const partitionCount = async () => {
    try {
      const md = await admin.fetchTopicMetadata({ topics: [topic] })
      return md.topics[0].partitions.length
    } catch (e) {
      return -1
    }
  }
  await waitFor('2 partitions in metadata', async () => (await partitionCount()) === 2)
  const topics = await admin.listTopics()
  if (!topics.includes(topic)) fail(`listTopics does not include ${topic}: ${topics}`)
  ok(`listTopics and fetchTopicMetadata: ${topic} with 2 partitions`)

  const described = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false })
  const [resource] = described.resources
  if (resource.errorCode !== 0) fail(`describeConfigs error ${resource.errorCode} ${resource.errorMessage}`)
  const entry = (name) => resource.configEntries.find((e) => e.configName === name) || fail(`describeConfigs lacks ${name}`)
  const ret = entry('retention.ms')
  if (ret.configValue !== retention || ret.isDefault) fail(`retention.ms described as ${JSON.stringify(ret)}`)
  const policy = entry('cleanup.policy')
  if (policy.configValue !== 'delete' || !policy.isDefault) fail(`cleanup.policy described as ${JSON.stringify(policy)}`)
  ok(`describeConfigs: retention.ms=${retention} (not default), cleanup.policy=delete (default), ${resource.configEntries.length} entries`)

  await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }], timeout: WAIT_TIMEOUT_MS })
  let refused = null
  try {
    await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] })
  } catch (e) {
    refused = e
  }
  const cause = refused && ((refused.errors && refused.errors[0] && refused.errors[0].type) || refused.type)
  if (cause !== 'INVALID_PARTITIONS') fail(`createPartitions 3 -> 3: ${refused}, type ${cause}, want INVALID_PARTITIONS`)
  await waitFor('3 partitions in metadata', async () => (await partitionCount()) === 3)
  ok('createPartitions 2 -> 3 (3 -> 3 refused with INVALID_PARTITIONS)')

  const producer = kafka.producer()
  await producer.connect()
  await producer.send({ topic, acks: -1, messages: Array.from({ length: 10 }, (_, i) => ({ partition: 2, value: String(i) })) })
  await producer.disconnect()
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 2, offset: '4' }] })
  const offsets = await admin.fetchTopicOffsets(topic)
  const p2 = offsets.find((o) => o.partition === 2)
  if (Number(p2.low) !== 4 || Number(p2.high) !== 10) fail(`after deleteTopicRecords to 4: ${JSON.stringify(p2)}, want low 4 high 10`)
  ok('deleteTopicRecords: partition 2 now starts at 4 (end 10), fetchTopicOffsets agrees')

  await admin.deleteTopics({ topics: [topic], timeout: WAIT_TIMEOUT_MS })
  await waitFor(`${topic} gone from listTopics`, async () => !(await admin.listTopics()).includes(topic))
  ok(`deleteTopics: ${topic} no longer listed`)
  await admin.disconnect()
}

async function main () {
  const [scenario, broker, topic] = process.argv.slice(2)
  const run = { produce: produceScenario, group: groupScenario, admin: adminScenario }[scenario]
  if (!run || !broker || !topic) fail('usage: node scenarios.js <produce|group|admin> <host:port> <topic>')
  await run(broker, topic)
  console.log(`PASS kafkajs ${scenario}`)
}

main().then(() => process.exit(0), (e) => {
  console.log(e instanceof Failure ? `FAIL: ${e.message}` : `FAIL: unexpected error: ${e && e.stack}`)
  process.exit(1)
})
