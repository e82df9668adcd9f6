// franz-go (github.com/twmb/franz-go, kgo + kadm) scenarios: idempotent keyed produce in every
// codec and read-back, a two-member consumer group with a member restart, and admin calls.
// Must never skip a check when the broker answers something unexpected: every error fails.

package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var franzCodecs = map[string]kgo.CompressionCodec{
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

func franzClient(brokers string, opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers)}, opts...)...)
	check(err, "kgo.NewClient")
	return cl
}

func bgCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), waitTimeout)
}

func franzCreateTopic(adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	ctx, cancel := bgCtx()
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	check(err, "CreateTopic "+topic)
	check(resp.Err, "CreateTopic "+topic)
}

func franzProduce(brokers, topic string) {
	adm := kadm.NewClient(franzClient(brokers))
	defer adm.Close()
	franzCreateTopic(adm, topic, 3, nil)

	codecs := []string{"gzip", "snappy", "lz4", "zstd"}
	for _, codec := range codecs {
		// One idempotent (franz-go's default) acks=all producer per codec; records go in
		// one ProduceSync so the client batches them.
		cl := franzClient(brokers, kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerBatchCompression(franzCodecs[codec]), kgo.DefaultProduceTopic(topic))
		var recs []*kgo.Record
		for i := 0; i < produceRecords; i++ {
			if codecFor(i, codecs) != codec {
				continue
			}
			r := produced(i, codec)
			kr := &kgo.Record{Key: []byte(r.key), Value: []byte(r.value)}
			for _, h := range r.headers {
				kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.key, Value: []byte(h.value)})
			}
			recs = append(recs, kr)
		}
		ctx, cancel := bgCtx()
		check(cl.ProduceSync(ctx, recs...).FirstErr(), "ProduceSync "+codec)
		cancel()
		cl.Close()
	}
	okf("produced %d records (idempotent, acks=all) with %v", produceRecords, codecs)

	cl := franzClient(brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	var got []rec
	deadline := time.Now().Add(waitTimeout)
	for len(got) < produceRecords && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				fail("fetch %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			g := rec{key: string(r.Key), value: string(r.Value), partition: r.Partition, offset: r.Offset}
			for _, h := range r.Headers {
				g.headers = append(g.headers, header{h.Key, string(h.Value)})
			}
			got = append(got, g)
		})
	}
	// A short extra poll: anything more than produceRecords is a duplicate.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, rec{partition: r.Partition, offset: r.Offset}) })
	cancel()
	checkReadBack(got, codecs, 3)
}

// franzMember is one consumer-group member polling in its own goroutine. With
// BlockRebalanceOnPoll it commits everything it read before the next rebalance can run, so
// a correct coordinator hands every record to the group exactly once.
type franzMember struct {
	name string
	cl   *kgo.Client
	done chan struct{}
	stop chan struct{}
}

func startFranzMember(brokers, topic, group, name string, mu *sync.Mutex, own *owners, ledger *groupLedger) *franzMember {
	m := &franzMember{name: name, done: make(chan struct{}), stop: make(chan struct{})}
	track := func(assign bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			if assign {
				own.assign(name, ps[topic])
			} else {
				own.revoke(name, ps[topic])
			}
		}
	}
	m.cl = franzClient(brokers,
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(time.Second),
		kgo.OnPartitionsAssigned(track(true)), kgo.OnPartitionsRevoked(track(false)),
		kgo.OnPartitionsLost(track(false)), kgo.ClientID(name))
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			fetches := m.cl.PollFetches(ctx)
			cancel()
			for _, fe := range fetches.Errors() {
				if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, kgo.ErrClientClosed) {
					fail("member %s fetch %s/%d: %v", name, fe.Topic, fe.Partition, fe.Err)
				}
			}
			mu.Lock()
			fetches.EachRecord(func(r *kgo.Record) { ledger.read(name, r.Partition, r.Offset, string(r.Value)) })
			mu.Unlock()
			ctx, cancel = context.WithTimeout(context.Background(), waitTimeout)
			err := m.cl.CommitUncommittedOffsets(ctx)
			cancel()
			check(err, "member "+name+" commit")
			m.cl.AllowRebalance()
		}
	}()
	return m
}

// close stops polling (after a final commit in the loop) and leaves the group.
func (m *franzMember) close() {
	close(m.stop)
	<-m.done
	m.cl.Close()
}

// franzProduceNumbered appends `count` records to every partition, valued by groupValue.
func franzProduceNumbered(brokers, topic string, ends map[int32]int64, count int) {
	cl := franzClient(brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic))
	defer cl.Close()
	var recs []*kgo.Record
	for p := int32(0); p < groupPartitions; p++ {
		for i := 0; i < count; i++ {
			recs = append(recs, &kgo.Record{Partition: p, Value: []byte(groupValue(p, ends[p]))})
			ends[p]++
		}
	}
	ctx, cancel := bgCtx()
	defer cancel()
	check(cl.ProduceSync(ctx, recs...).FirstErr(), "produce numbered records")
}

func franzGroup(brokers, topic string) {
	adm := kadm.NewClient(franzClient(brokers))
	defer adm.Close()
	franzCreateTopic(adm, topic, groupPartitions, nil)
	group := topic + "-group"
	ends := groupScenario(func(name string, mu *sync.Mutex, own *owners, ledger *groupLedger) member {
		return startFranzMember(brokers, topic, group, name, mu, own, ledger)
	}, func(ends map[int32]int64, count int) { franzProduceNumbered(brokers, topic, ends, count) },
		func() (string, map[string][]int32) {
			ctx, cancel := bgCtx()
			defer cancel()
			described, err := adm.DescribeGroups(ctx, group)
			check(err, "DescribeGroups")
			g := described[group]
			check(g.Err, "DescribeGroups "+group)
			assigned := map[string][]int32{}
			for _, m := range g.Members {
				a, ok := m.Assigned.AsConsumer()
				if !ok {
					fail("member %s assignment is not a consumer assignment", m.ClientID)
				}
				assigned[m.ClientID] = nil
				for _, t := range a.Topics {
					if t.Topic == topic {
						assigned[m.ClientID] = append(assigned[m.ClientID], t.Partitions...)
					}
				}
			}
			return g.State, assigned
		})

	ctx, cancel := bgCtx()
	defer cancel()
	committed, err := adm.FetchOffsets(ctx, group)
	check(err, "FetchOffsets")
	for p, end := range ends {
		o, ok := committed.Lookup(topic, p)
		if !ok || o.Err != nil || o.At != end {
			fail("committed offset of partition %d: %+v (found %v), want %d", p, o, ok, end)
		}
	}
	okf("committed offsets equal the log ends %v", ends)
}

func franzAdmin(brokers, topic string) {
	// kgo refreshes metadata at most every 5 s by default; the waits below poll it.
	adm := kadm.NewClient(franzClient(brokers, kgo.MetadataMinAge(200*time.Millisecond)))
	defer adm.Close()
	ctx, cancel := bgCtx()
	defer cancel()
	retention := "3600000"
	franzCreateTopic(adm, topic, 2, map[string]*string{"retention.ms": &retention})
	again, err := adm.CreateTopic(ctx, 2, 1, nil, topic)
	if err == nil && again.Err == nil {
		fail("creating %s twice succeeded", topic)
	}
	if err == nil {
		err = again.Err
	}
	okf("created %s (2 partitions, retention.ms=%s); second create refused: %v", topic, retention, err)

	// listPartitions is -1 while the topic is not listed (Kafka's metadata can lag a change).
	listPartitions := func() int {
		all, err := adm.ListTopics(ctx)
		check(err, "ListTopics")
		d, ok := all[topic]
		if !ok || d.Err != nil {
			return -1
		}
		return len(d.Partitions)
	}
	if n := listPartitions(); n != 2 {
		fail("%s has %d partitions, want 2", topic, n)
	}
	okf("ListTopics lists %s with 2 partitions", topic)

	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	check(err, "DescribeTopicConfigs")
	rc, err := configs.On(topic, nil)
	check(err, "DescribeTopicConfigs "+topic)
	check(rc.Err, "DescribeTopicConfigs "+topic)
	found := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		found[c.Key] = c
	}
	if c := found["retention.ms"]; c.Value == nil || *c.Value != retention || c.Source.String() != "DYNAMIC_TOPIC_CONFIG" {
		fail("retention.ms described as %+v", c)
	}
	if c := found["cleanup.policy"]; c.Value == nil || *c.Value != "delete" || c.Source.String() != "DEFAULT_CONFIG" {
		fail("cleanup.policy described as %+v", c)
	}
	okf("DescribeTopicConfigs: retention.ms=%s DYNAMIC_TOPIC_CONFIG, cleanup.policy=delete DEFAULT_CONFIG (%d configs)", retention, len(rc.Configs))

	cp, err := adm.UpdatePartitions(ctx, 3, topic)
	check(err, "UpdatePartitions")
	r, _ := cp.On(topic, nil)
	check(r.Err, "UpdatePartitions "+topic)
	waitFor("3 partitions in metadata", func() bool { return listPartitions() == 3 })
	okf("UpdatePartitions 2 -> 3")

	cl := franzClient(brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic))
	defer cl.Close()
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, &kgo.Record{Partition: 2, Value: []byte(fmt.Sprint(i))})
	}
	check(cl.ProduceSync(ctx, recs...).FirstErr(), "produce to the new partition 2")
	offs := make(kadm.Offsets)
	offs.Add(kadm.Offset{Topic: topic, Partition: 2, At: 4})
	dr, err := adm.DeleteRecords(ctx, offs)
	check(err, "DeleteRecords")
	d, ok := dr.Lookup(topic, 2)
	if !ok || d.Err != nil || d.LowWatermark != 4 {
		fail("DeleteRecords to 4: %+v", d)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	check(err, "ListStartOffsets")
	if s, _ := starts.Lookup(topic, 2); s.Err != nil || s.Offset != 4 {
		fail("start offset after DeleteRecords: %+v", s)
	}
	okf("DeleteRecords: low watermark 4, ListStartOffsets 4")

	del, err := adm.DeleteTopic(ctx, topic)
	check(err, "DeleteTopic")
	check(del.Err, "DeleteTopic "+topic)
	waitFor(topic+" gone from ListTopics", func() bool {
		all, err := adm.ListTopics(ctx)
		check(err, "ListTopics")
		_, ok := all[topic]
		return !ok
	})
	okf("DeleteTopic: %s no longer listed", topic)
}

// franzRecordErrors produces one batch of 100 records to a compacted topic, every tenth
// (index 3, 13, ...) without a key, and prints what franz-go reports for each record:
// "record-errors <index>:<error>,..." grouped by error text, and the log end after it. franz-go
// does not read Produce's per-record record_errors: it fails every record of the refused batch
// with the partition error, so the test checks that all 100 carry INVALID_RECORD on both brokers.
func franzRecordErrors(brokers, topic string) {
	adm := kadm.NewClient(franzClient(brokers))
	defer adm.Close()
	compact := "compact"
	franzCreateTopic(adm, topic, 1, map[string]*string{"cleanup.policy": &compact})

	cl := franzClient(brokers, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Second),
		kgo.RecordRetries(0))
	defer cl.Close()
	ctx, cancel := bgCtx()
	defer cancel()
	// A first record alone, so the client is connected and the next 100 go in one batch.
	check(cl.ProduceSync(ctx, &kgo.Record{Key: []byte("first"), Value: []byte("first")}).FirstErr(),
		"first record")
	recs := make([]*kgo.Record, 100)
	for i := range recs {
		recs[i] = &kgo.Record{Value: []byte(fmt.Sprintf("v%d", i))}
		if i%10 != 3 {
			recs[i].Key = []byte(fmt.Sprintf("k%d", i))
		}
	}
	results := cl.ProduceSync(ctx, recs...)
	byErr := map[string][]int{}
	for i, r := range results {
		text := "ok"
		if r.Err != nil {
			text = r.Err.Error()
		}
		byErr[text] = append(byErr[text], i)
	}
	texts := make([]string, 0, len(byErr))
	for t := range byErr {
		texts = append(texts, t)
	}
	sort.Strings(texts)
	for _, t := range texts {
		fmt.Printf("errors %d %q\n", len(byErr[t]), t)
	}
	okf("%d records produced in one batch, %d distinct outcomes", len(recs), len(texts))
}
