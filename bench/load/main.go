// Command load is the benchmark harness's native load generator (issue 13): fixed-rate,
// open-loop produce load against any Kafka-compatible broker, with latencies in an HDR
// histogram counted from each record's due time, optionally with a consumer for end-to-end
// latency. One JSON document on stdout reports the run; progress and errors go to stderr.
//
// Why Go and franz-go: the integration suite already builds franz-go (tests/clients/go), it is
// a complete, well-kept pure-Go client (idempotence, all codecs, linger, many in-flight
// requests), and one process drives many producers on one core cheaply: the broker, not the
// load generator, should be what a benchmark saturates.
//
// Open loop: the schedule (schedule.go) says when record i is due (start + i/rate, striped over
// the producers). A producer hands record i to the client at its due time or, if it is
// behind, at once; its latency is ack time minus due time. A broker that stalls therefore
// shows as latency of every record due during the stall, not as a lower sending rate
// (coordinated omission). How late records were handed over is reported (`send_lag`) so a
// saturated client is visible. With -rate 0 the producers send as fast as the client
// accepts (closed loop) and latency counts from the Produce call: a throughput mode, not a
// latency figure.
//
// Records sent during -warmup are not measured. Records due in the measured window count;
// after it the program waits (-drain) for their acknowledgements (and, with -e2e, for the
// consumer to read them); any not acknowledged by then count as errors (`unacked`).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is the command line.
type Config struct {
	Brokers     string
	Topic       string
	Create      bool
	Partitions  int
	RF          int
	TopicConfig string
	Rate        float64
	Duration    time.Duration
	Warmup      time.Duration
	Drain       time.Duration
	Producers   int
	Size        int
	Acks        string
	Idempotent  string
	Compression string
	Linger      time.Duration
	Partitioner string
	E2E         bool
	BufferedMB  int
}

// Report is the JSON document printed on stdout.
type Report struct {
	Brokers       string           `json:"brokers"`
	Topic         string           `json:"topic"`
	Partitions    int              `json:"partitions"`
	RF            int              `json:"replication_factor"`
	TargetRate    float64          `json:"target_rate"`
	Producers     int              `json:"producers"`
	Size          int              `json:"size"`
	Acks          string           `json:"acks"`
	Idempotent    bool             `json:"idempotent"`
	Compression   string           `json:"compression"`
	LingerMs      float64          `json:"linger_ms"`
	MeasuredS     float64          `json:"measured_s"`
	Due           int64            `json:"records_due"`
	Acked         int64            `json:"records_acked"`
	AckedTotal    int64            `json:"records_acked_total"` // warm-up included
	Failed        int64            `json:"records_failed"`
	Unacked       int64            `json:"records_unacked"`
	Errors        int64            `json:"errors"`
	ErrorKinds    map[string]int64 `json:"error_kinds,omitempty"`
	AchievedRate  float64          `json:"achieved_rate"`
	MBPerS        float64          `json:"mb_per_s"`
	Ack           Summary          `json:"ack"`
	SendLag       Summary          `json:"send_lag"`
	E2E           *Summary         `json:"e2e,omitempty"`
	Consumed      int64            `json:"records_consumed,omitempty"`
	ClientCPUS    float64          `json:"client_cpu_s"`
	ClientWallS   float64          `json:"client_wall_s"`
	ClientCPUFrac float64          `json:"client_cpu_frac"`
}

func parseFlags(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.StringVar(&c.Brokers, "brokers", "127.0.0.1:9092", "bootstrap servers, comma separated")
	fs.StringVar(&c.Topic, "topic", "load", "topic")
	fs.BoolVar(&c.Create, "create", false, "create the topic (-partitions, -rf, -topic-config) and wait until every partition has a leader and a full ISR")
	fs.IntVar(&c.Partitions, "partitions", 16, "partitions of a created topic")
	fs.IntVar(&c.RF, "rf", 1, "replication factor of a created topic")
	fs.StringVar(&c.TopicConfig, "topic-config", "", "k=v,k=v configs of a created topic (e.g. min.insync.replicas=2)")
	fs.Float64Var(&c.Rate, "rate", 1000, "records per second over all producers (open loop); 0 = as fast as the client accepts (closed loop)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured sending before it")
	fs.DurationVar(&c.Drain, "drain", 30*time.Second, "wait for outstanding acknowledgements (and consumption) after it")
	fs.IntVar(&c.Producers, "producers", 1, "producer clients (one connection set each)")
	fs.IntVar(&c.Size, "size", 1024, "record value bytes (>= 9)")
	fs.StringVar(&c.Acks, "acks", "all", "0, 1 or all")
	fs.StringVar(&c.Idempotent, "idempotent", "auto", "true, false, or auto (= acks is all)")
	fs.StringVar(&c.Compression, "compression", "none", "none, gzip, snappy, lz4 or zstd")
	fs.DurationVar(&c.Linger, "linger", time.Millisecond, "producer linger")
	fs.StringVar(&c.Partitioner, "partitioner", "sticky", "sticky (franz-go's default uniform-bytes sticky) or roundrobin")
	fs.IntVar(&c.BufferedMB, "buffered-mb", 64, "per producer: most MiB of records buffered in the client (Produce waits beyond it)")
	fs.BoolVar(&c.E2E, "e2e", false, "also consume the topic and report produce-to-consume latency")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.Rate < 0:
		return c, errors.New("-rate must be >= 0")
	case c.Producers < 1:
		return c, errors.New("-producers must be >= 1")
	case c.Size < 9:
		return c, errors.New("-size must be >= 9 (due time and a flag ride in the value)")
	case c.Duration <= 0:
		return c, errors.New("-duration must be > 0")
	case c.BufferedMB < 1:
		return c, errors.New("-buffered-mb must be >= 1")
	}
	if _, err := acksOf(c.Acks); err != nil {
		return c, err
	}
	if _, err := codecOf(c.Compression); err != nil {
		return c, err
	}
	if _, err := c.idempotent(); err != nil {
		return c, err
	}
	return c, nil
}

func acksOf(s string) (kgo.Acks, error) {
	switch s {
	case "0":
		return kgo.NoAck(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	}
	return kgo.Acks{}, fmt.Errorf("-acks %q: want 0, 1 or all", s)
}

func codecOf(s string) (kgo.CompressionCodec, error) {
	switch s {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("-compression %q: want none, gzip, snappy, lz4 or zstd", s)
}

func (c Config) idempotent() (bool, error) {
	switch c.Idempotent {
	case "auto":
		return c.Acks == "all" || c.Acks == "-1", nil
	case "true":
		if c.Acks != "all" && c.Acks != "-1" {
			return false, errors.New("-idempotent true needs -acks all")
		}
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("-idempotent %q: want true, false or auto", c.Idempotent)
}

func (c Config) producerOpts() []kgo.Opt {
	acks, _ := acksOf(c.Acks)
	codec, _ := codecOf(c.Compression)
	idem, _ := c.idempotent()
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(c.Brokers, ",")...),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(c.Linger),
		kgo.ProduceRequestTimeout(30 * time.Second),
		kgo.MaxBufferedBytes(c.BufferedMB << 20),
	}
	if !idem {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if c.Partitioner == "roundrobin" {
		opts = append(opts, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	}
	return opts
}

// run holds the counters shared by the producers, their promises and the consumer.
type run struct {
	cfg        Config
	ack        *Latencies
	sendLag    *Latencies
	e2e        *Latencies
	due        atomic.Int64
	acked      atomic.Int64
	ackedTotal atomic.Int64
	failed     atomic.Int64
	consumed   atomic.Int64
	errMu      sync.Mutex
	errKinds   map[string]int64
	payload    []byte
	measureAt  time.Time
	endAt      time.Time
	inFlight   sync.WaitGroup
}

// Value layout: 8 bytes due time (Unix ns, big endian), 1 byte "measured", then filler.
func (r *run) value(due time.Time, measured bool, rng *rand.Rand) []byte {
	v := make([]byte, r.cfg.Size)
	copy(v[9:], r.payload[rng.IntN(len(r.payload)-r.cfg.Size):])
	binary.BigEndian.PutUint64(v, uint64(due.UnixNano()))
	if measured {
		v[8] = 1
	}
	return v
}

func (r *run) noteError(err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160]
	}
	r.errKinds[msg]++
}

func (r *run) send(ctx context.Context, cl *kgo.Client, due time.Time, rng *rand.Rand) {
	measured := !due.Before(r.measureAt) && due.Before(r.endAt)
	if measured {
		r.due.Add(1)
		r.sendLag.Record(time.Since(due))
	}
	r.inFlight.Add(1)
	cl.Produce(ctx, &kgo.Record{Value: r.value(due, measured, rng)}, func(_ *kgo.Record, err error) {
		defer r.inFlight.Done()
		if err != nil {
			if measured {
				r.failed.Add(1)
			}
			r.noteError(err)
			return
		}
		r.ackedTotal.Add(1)
		if measured {
			r.acked.Add(1)
			r.ack.Record(time.Since(due))
		}
	})
}

// produce is producer p's loop until the measured window ends.
func (r *run) produce(ctx context.Context, cl *kgo.Client, p int, start time.Time) {
	rng := rand.New(rand.NewPCG(uint64(p), uint64(start.UnixNano())))
	if r.cfg.Rate == 0 {
		for {
			now := time.Now()
			if !now.Before(r.endAt) {
				return
			}
			r.send(ctx, cl, now, rng)
		}
	}
	sched := Schedule{Start: start, Rate: r.cfg.Rate}
	for k := int64(0); ; k++ {
		due := sched.Due(Stripe(p, r.cfg.Producers, k))
		if !due.Before(r.endAt) {
			return
		}
		if d := time.Until(due); d > 0 {
			sleepUntilDue(d)
		}
		r.send(ctx, cl, due, rng)
	}
}

func (r *run) consume(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(_ string, _ int32, err error) { r.noteError(fmt.Errorf("consume: %w", err)) })
		now := time.Now()
		fs.EachRecord(func(rec *kgo.Record) {
			if len(rec.Value) < 9 || rec.Value[8] != 1 {
				return
			}
			due := time.Unix(0, int64(binary.BigEndian.Uint64(rec.Value)))
			r.e2e.Record(now.Sub(due))
			r.consumed.Add(1)
		})
	}
}

func createTopic(ctx context.Context, c Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(c.Brokers, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	configs := map[string]*string{}
	for _, kv := range strings.Split(c.TopicConfig, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			configs[k] = &v
		}
	}
	resp, err := adm.CreateTopic(ctx, int32(c.Partitions), int16(c.RF), configs, c.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
		return fmt.Errorf("create %s: %w", c.Topic, err)
	}
	// Ready when every partition has a leader and a full ISR: a benchmark must not time the
	// cluster settling.
	var last string
	for ctx.Err() == nil {
		td, err := adm.ListTopics(ctx, c.Topic)
		if err == nil {
			t := td[c.Topic]
			ready := t.Err == nil && len(t.Partitions) == c.Partitions
			for _, p := range t.Partitions {
				if p.Err != nil || p.Leader < 0 || len(p.ISR) < c.RF {
					ready = false
				}
			}
			if ready {
				return nil
			}
			last = fmt.Sprintf("%d partitions, err %v", len(t.Partitions), t.Err)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("topic %s not ready: %s", c.Topic, last)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// Run performs one load run and returns its report; err only for a run that could not start.
func Run(c Config) (Report, error) {
	idem, _ := c.idempotent()
	rep := Report{Brokers: c.Brokers, Topic: c.Topic, Partitions: c.Partitions, RF: c.RF,
		TargetRate: c.Rate, Producers: c.Producers, Size: c.Size, Acks: c.Acks, Idempotent: idem,
		Compression: c.Compression, LingerMs: float64(c.Linger) / 1e6}
	if c.Create {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		err := createTopic(ctx, c)
		cancel()
		if err != nil {
			return rep, err
		}
	}
	r := &run{cfg: c, ack: NewLatencies(), sendLag: NewLatencies(), e2e: NewLatencies(),
		errKinds: map[string]int64{}}
	// Random upper-case letters, as Kafka's ProducerPerformance sends: compressible like text.
	r.payload = make([]byte, 1<<20+c.Size)
	seed := rand.New(rand.NewPCG(1, 2))
	for i := range r.payload {
		r.payload[i] = byte('A' + seed.IntN(26))
	}

	var consumer *kgo.Client
	cctx, stopConsumer := context.WithCancel(context.Background())
	defer stopConsumer()
	var consumerDone sync.WaitGroup
	if c.E2E {
		var err error
		consumer, err = kgo.NewClient(kgo.SeedBrokers(strings.Split(c.Brokers, ",")...),
			kgo.ConsumeTopics(c.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return rep, err
		}
		defer consumer.Close()
		consumerDone.Add(1)
		go func() { defer consumerDone.Done(); r.consume(cctx, consumer) }()
	}

	clients := make([]*kgo.Client, c.Producers)
	for p := range clients {
		cl, err := kgo.NewClient(c.producerOpts()...)
		if err != nil {
			return rep, err
		}
		defer cl.Close()
		clients[p] = cl
	}
	start := time.Now().Add(50 * time.Millisecond)
	r.measureAt = start.Add(c.Warmup)
	r.endAt = r.measureAt.Add(c.Duration)
	cpu0 := cpuSeconds() // whole run (warm-up included): the client's load on its core
	ctx := context.Background()
	var producers sync.WaitGroup
	for p, cl := range clients {
		producers.Add(1)
		go func() { defer producers.Done(); r.produce(ctx, cl, p, start) }()
	}
	producers.Wait()
	measured := time.Since(r.measureAt)
	if measured > c.Duration {
		measured = c.Duration
	}
	drainCtx, cancelDrain := context.WithTimeout(ctx, c.Drain)
	for _, cl := range clients {
		_ = cl.Flush(drainCtx) // a timeout leaves records unacknowledged: counted below
	}
	if c.E2E {
		for drainCtx.Err() == nil && r.consumed.Load() < r.acked.Load() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancelDrain()
	wall := time.Since(start)
	cpu := cpuSeconds() - cpu0
	stopConsumer()
	consumerDone.Wait()

	rep.MeasuredS = measured.Seconds()
	rep.Due, rep.Acked, rep.Failed = r.due.Load(), r.acked.Load(), r.failed.Load()
	rep.AckedTotal = r.ackedTotal.Load()
	rep.Unacked = rep.Due - rep.Acked - rep.Failed
	rep.Errors = rep.Failed + rep.Unacked
	r.errMu.Lock()
	for k, v := range r.errKinds {
		rep.ErrorKinds = mergeKinds(rep.ErrorKinds, k, v)
	}
	r.errMu.Unlock()
	if c.E2E {
		s := r.e2e.Summary()
		rep.E2E = &s
		rep.Consumed = r.consumed.Load()
		if rep.Consumed < rep.Acked {
			rep.Errors += rep.Acked - rep.Consumed
			rep.ErrorKinds = mergeKinds(rep.ErrorKinds, "acknowledged but not consumed", rep.Acked-rep.Consumed)
		}
	}
	rep.AchievedRate = float64(rep.Acked) / rep.MeasuredS
	rep.MBPerS = rep.AchievedRate * float64(c.Size) / (1 << 20)
	rep.Ack = r.ack.Summary()
	rep.SendLag = r.sendLag.Summary()
	rep.ClientCPUS = cpu
	rep.ClientWallS = wall.Seconds()
	rep.ClientCPUFrac = cpu / wall.Seconds()
	return rep, nil
}

func mergeKinds(m map[string]int64, k string, v int64) map[string]int64 {
	if m == nil {
		m = map[string]int64{}
	}
	m[k] += v
	return m
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	rep, err := Run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	if rep.Errors > 0 || rep.Acked == 0 {
		kinds := make([]string, 0, len(rep.ErrorKinds))
		for k, v := range rep.ErrorKinds {
			kinds = append(kinds, fmt.Sprintf("%d× %s", v, k))
		}
		sort.Strings(kinds)
		fmt.Fprintf(os.Stderr, "load: %d errors, %d acknowledged: %s\n", rep.Errors, rep.Acked, strings.Join(kinds, "; "))
		os.Exit(1)
	}
}
