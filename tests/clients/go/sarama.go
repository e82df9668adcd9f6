// sarama (github.com/IBM/sarama) scenarios: idempotent keyed produce in every codec and
// read-back, a two-member consumer group with a member restart, and ClusterAdmin calls.
// Must never skip a check when the broker answers something unexpected: every error fails.

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

var saramaCodecs = map[string]sarama.CompressionCodec{
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
	"zstd":   sarama.CompressionZSTD,
}

// saramaConfig speaks Kafka 4.1's protocol versions (sarama's default, 2.8, would use
// Produce/Fetch versions Kafka 4 removed).
func saramaConfig(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_1_0_0
	cfg.ClientID = clientID
	cfg.Admin.Timeout = waitTimeout
	// A fresh topic's leaders may not be known for a moment (Kafka): retry as apps do.
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 250 * time.Millisecond
	return cfg
}

// checkSend fails with every per-message error SendMessages reported, not just their count.
func checkSend(err error, what string) {
	var perr sarama.ProducerErrors
	if errors.As(err, &perr) && len(perr) > 0 {
		fail("%s: %d failed, first: partition %d: %v", what, len(perr), perr[0].Msg.Partition, perr[0].Err)
	}
	check(err, what)
}

func saramaAdminClient(brokers string) sarama.ClusterAdmin {
	adm, err := sarama.NewClusterAdmin([]string{brokers}, saramaConfig("sarama-admin"))
	check(err, "NewClusterAdmin")
	return adm
}

// saramaCreateTopic creates topic and waits until Metadata names a leader for each partition:
// Kafka answers CreateTopics before its broker knows the topic, and sarama's idempotent
// producer gives up on UNKNOWN_TOPIC_OR_PARTITION instead of retrying it.
func saramaCreateTopic(adm sarama.ClusterAdmin, brokers, topic string, detail *sarama.TopicDetail) {
	check(adm.CreateTopic(topic, detail, false), "CreateTopic "+topic)
	client, err := sarama.NewClient([]string{brokers}, saramaConfig("sarama-wait-topic"))
	check(err, "NewClient")
	defer client.Close()
	waitFor(topic+" leaders in Metadata", func() bool {
		if client.RefreshMetadata(topic) != nil {
			return false
		}
		for p := int32(0); p < detail.NumPartitions; p++ {
			if _, err := client.Leader(topic, p); err != nil {
				return false
			}
		}
		return true
	})
}

func saramaProduce(brokers, topic string) {
	adm := saramaAdminClient(brokers)
	defer adm.Close()
	saramaCreateTopic(adm, brokers, topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1})

	codecs := []string{"gzip", "snappy", "lz4", "zstd"}
	for _, codec := range codecs {
		cfg := saramaConfig("sarama-producer-" + codec)
		cfg.Producer.Idempotent = true
		cfg.Net.MaxOpenRequests = 1 // sarama requires it for idempotence
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Return.Successes = true
		cfg.Producer.Compression = saramaCodecs[codec]
		cfg.Producer.Flush.Messages = 100 // batches of many records, so each codec compresses a run
		cfg.Producer.Flush.Frequency = 10 * time.Millisecond
		p, err := sarama.NewSyncProducer([]string{brokers}, cfg)
		check(err, "NewSyncProducer "+codec)
		var msgs []*sarama.ProducerMessage
		for i := 0; i < produceRecords; i++ {
			if codecFor(i, codecs) != codec {
				continue
			}
			r := produced(i, codec)
			m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.key), Value: sarama.StringEncoder(r.value)}
			for _, h := range r.headers {
				m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.key), Value: []byte(h.value)})
			}
			msgs = append(msgs, m)
		}
		checkSend(p.SendMessages(msgs), "SendMessages "+codec)
		check(p.Close(), "producer close")
	}
	okf("produced %d records (idempotent, acks=all, MaxOpenRequests=1) with %v", produceRecords, codecs)

	consumer, err := sarama.NewConsumer([]string{brokers}, saramaConfig("sarama-consumer"))
	check(err, "NewConsumer")
	defer consumer.Close()
	var mu sync.Mutex
	var got []rec
	var pcs []sarama.PartitionConsumer
	for p := int32(0); p < 3; p++ {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		check(err, fmt.Sprintf("ConsumePartition %d", p))
		pcs = append(pcs, pc)
		go func() {
			for m := range pc.Messages() {
				g := rec{key: string(m.Key), value: string(m.Value), partition: m.Partition, offset: m.Offset}
				for _, h := range m.Headers {
					g.headers = append(g.headers, header{string(h.Key), string(h.Value)})
				}
				mu.Lock()
				got = append(got, g)
				mu.Unlock()
			}
		}()
		go func() {
			for e := range pc.Errors() {
				fail("consume partition %d: %v", e.Partition, e.Err)
			}
		}()
	}
	waitFor("1000 records", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= produceRecords })
	time.Sleep(500 * time.Millisecond) // anything more than produceRecords is a duplicate
	for _, pc := range pcs {
		pc.AsyncClose()
	}
	mu.Lock()
	defer mu.Unlock()
	// Per-partition order holds within got (one goroutine per partition appends in order).
	checkReadBack(got, codecs, 3)
}

// saramaHandler is one group member's sarama.ConsumerGroupHandler: it records ownership in
// Setup/Cleanup and commits what it read synchronously before waiting for more, so the group
// reads each record exactly once across rebalances.
type saramaHandler struct {
	name, topic string
	mu          *sync.Mutex
	own         *owners
	ledger      *groupLedger
}

func (h *saramaHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.own.assign(h.name, s.Claims()[h.topic])
	return nil
}

func (h *saramaHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.own.revoke(h.name, s.Claims()[h.topic])
	return nil
}

func (h *saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-s.Context().Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			// Read what is already buffered, then commit once (a commit per record is a
			// round trip each: slow on both brokers).
			for ok {
				h.mu.Lock()
				h.ledger.read(h.name, m.Partition, m.Offset, string(m.Value))
				h.mu.Unlock()
				s.MarkMessage(m, "")
				select {
				case m, ok = <-claim.Messages():
				default:
					ok = false
				}
			}
			s.Commit()
		}
	}
}

type saramaMember struct {
	cg     sarama.ConsumerGroup
	cancel context.CancelFunc
	done   chan struct{}
}

func startSaramaMember(brokers, topic, group, name string, mu *sync.Mutex, own *owners, ledger *groupLedger) *saramaMember {
	cfg := saramaConfig(name)
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = time.Second
	cfg.Consumer.Return.Errors = true
	cg, err := sarama.NewConsumerGroup([]string{brokers}, group, cfg)
	check(err, "NewConsumerGroup "+name)
	ctx, cancel := context.WithCancel(context.Background())
	m := &saramaMember{cg: cg, cancel: cancel, done: make(chan struct{})}
	handler := &saramaHandler{name: name, topic: topic, mu: mu, own: own, ledger: ledger}
	go func() {
		for err := range cg.Errors() {
			fail("member %s: %v", name, err)
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, handler); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				fail("member %s Consume: %v", name, err)
			}
		}
	}()
	return m
}

func (m *saramaMember) close() {
	m.cancel()
	<-m.done
	check(m.cg.Close(), "consumer group close")
}

func saramaProduceNumbered(brokers, topic string, ends map[int32]int64, count int) {
	cfg := saramaConfig("sarama-numbered")
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer([]string{brokers}, cfg)
	check(err, "NewSyncProducer")
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for part := int32(0); part < groupPartitions; part++ {
		for i := 0; i < count; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: part, Value: sarama.StringEncoder(groupValue(part, ends[part]))})
			ends[part]++
		}
	}
	checkSend(p.SendMessages(msgs), "produce numbered records")
}

func saramaGroup(brokers, topic string) {
	adm := saramaAdminClient(brokers)
	defer adm.Close()
	saramaCreateTopic(adm, brokers, topic, &sarama.TopicDetail{NumPartitions: groupPartitions, ReplicationFactor: 1})
	group := topic + "-group"
	ends := groupScenario(func(name string, mu *sync.Mutex, own *owners, ledger *groupLedger) member {
		return startSaramaMember(brokers, topic, group, name, mu, own, ledger)
	}, func(ends map[int32]int64, count int) { saramaProduceNumbered(brokers, topic, ends, count) },
		func() (string, map[string][]int32) {
			described, err := adm.DescribeConsumerGroups([]string{group})
			check(err, "DescribeConsumerGroups")
			if len(described) != 1 || described[0].Err != sarama.ErrNoError {
				fail("DescribeConsumerGroups %s: %+v", group, described)
			}
			assigned := map[string][]int32{}
			for _, m := range described[0].Members {
				a, err := m.GetMemberAssignment()
				check(err, "member assignment of "+m.ClientId)
				assigned[m.ClientId] = nil
				if a != nil {
					assigned[m.ClientId] = append(assigned[m.ClientId], a.Topics[topic]...)
				}
			}
			return described[0].State, assigned
		})

	committed, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2, 3}})
	check(err, "ListConsumerGroupOffsets")
	for p, end := range ends {
		b := committed.GetBlock(topic, p)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset != end {
			fail("committed offset of partition %d: %+v, want %d", p, b, end)
		}
	}
	okf("committed offsets equal the log ends %v", ends)
}

func saramaAdmin(brokers, topic string) {
	adm := saramaAdminClient(brokers)
	defer adm.Close()
	retention := "3600000"
	detail := &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1, ConfigEntries: map[string]*string{"retention.ms": &retention}}
	saramaCreateTopic(adm, brokers, topic, detail)
	err := adm.CreateTopic(topic, detail, false)
	if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		fail("second CreateTopic: %v, want TOPIC_ALREADY_EXISTS", err)
	}
	okf("created %s (2 partitions, retention.ms=%s); second create: %v", topic, retention, err)

	// describe is the partition count from DescribeTopics, -1 while the topic is not known
	// (Kafka's metadata can lag a change by a moment).
	describe := func() int {
		md, err := adm.DescribeTopics([]string{topic})
		check(err, "DescribeTopics")
		if len(md) != 1 || md[0].Err != sarama.ErrNoError {
			return -1
		}
		return len(md[0].Partitions)
	}
	waitFor("2 partitions in DescribeTopics", func() bool { return describe() == 2 })
	listed, err := adm.ListTopics()
	check(err, "ListTopics")
	if d, ok := listed[topic]; !ok || d.NumPartitions != 2 || d.ConfigEntries["retention.ms"] == nil || *d.ConfigEntries["retention.ms"] != retention {
		fail("ListTopics entry for %s: %+v (listed %v)", topic, d, ok)
	}
	okf("ListTopics and DescribeTopics: %s with 2 partitions, retention.ms %s", topic, retention)

	entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	check(err, "DescribeConfig")
	found := map[string]sarama.ConfigEntry{}
	for _, e := range entries {
		found[e.Name] = e
	}
	if e := found["retention.ms"]; e.Value != retention || e.Source != sarama.SourceTopic {
		fail("retention.ms described as %+v", e)
	}
	if e := found["cleanup.policy"]; e.Value != "delete" || e.Source != sarama.SourceDefault || !e.Default {
		fail("cleanup.policy described as %+v", e)
	}
	okf("DescribeConfig: retention.ms=%s (%v), cleanup.policy=delete (%v), %d entries", retention, sarama.SourceTopic, sarama.SourceDefault, len(entries))

	check(adm.CreatePartitions(topic, 3, nil, false), "CreatePartitions")
	if err := adm.CreatePartitions(topic, 3, nil, false); err == nil || !strings.Contains(err.Error(), "INVALID_PARTITIONS") && !errors.Is(err, sarama.ErrInvalidPartitions) {
		fail("CreatePartitions 3 -> 3: %v, want INVALID_PARTITIONS", err)
	}
	waitFor("3 partitions in DescribeTopics", func() bool { return describe() == 3 })
	okf("CreatePartitions 2 -> 3 (3 -> 3 refused)")

	cfg := saramaConfig("sarama-admin-producer")
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer([]string{brokers}, cfg)
	check(err, "NewSyncProducer")
	var msgs []*sarama.ProducerMessage
	for i := 0; i < 10; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: 2, Value: sarama.StringEncoder(fmt.Sprint(i))})
	}
	checkSend(p.SendMessages(msgs), "produce to the new partition 2")
	check(p.Close(), "producer close")
	check(adm.DeleteRecords(topic, map[int32]int64{2: 4}), "DeleteRecords")
	client, err := sarama.NewClient([]string{brokers}, saramaConfig("sarama-offsets"))
	check(err, "NewClient")
	defer client.Close()
	start, err := client.GetOffset(topic, 2, sarama.OffsetOldest)
	check(err, "GetOffset oldest")
	end, err := client.GetOffset(topic, 2, sarama.OffsetNewest)
	check(err, "GetOffset newest")
	if start != 4 || end != 10 {
		fail("after DeleteRecords to 4: offsets %d..%d, want 4..10", start, end)
	}
	okf("DeleteRecords: partition 2 now starts at 4 (end 10)")

	check(adm.DeleteTopic(topic), "DeleteTopic")
	waitFor(topic+" gone from ListTopics", func() bool {
		listed, err := adm.ListTopics()
		check(err, "ListTopics")
		_, ok := listed[topic]
		return !ok
	})
	okf("DeleteTopic: %s no longer listed", topic)
}
