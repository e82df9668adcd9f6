// Command clients runs the franz-go and sarama scenarios of tests/integration/test_go_clients.py
// against one broker (Josefine or the reference Kafka).
//
// Owns: producing, consuming and administering through the two Go clients, and checking what
// comes back. It prints "ok: ..." lines and exits 0 only when every check passed; any mismatch
// exits 1 with a "FAIL:" line saying what differed. It must never decide pass/fail on timing:
// deadlines only bound how long it waits for records that should arrive.
//
// Usage: clients <franz|sarama> <produce|group|admin> (franz also: record-errors, scram) -brokers host:port -topic name
// (scram also: -user U -password P -mechanism SCRAM-SHA-256|SCRAM-SHA-512 -ca ca.pem)
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// waitTimeout bounds every wait for records, assignments or metadata: generous because the
// machine is a busy 2-core box and Kafka's first group join waits for its rebalance delay.
const waitTimeout = 90 * time.Second

// produceRecords is scenario 1's record count (spread over the codecs, 3 partitions).
const produceRecords = 1000

// groupPartitions is scenario 2's partition count (two members own two each).
const groupPartitions = 4

func main() {
	if len(os.Args) < 3 {
		fail("usage: clients <franz|sarama> <produce|group|admin> -brokers host:port -topic name")
	}
	client, scenario := os.Args[1], os.Args[2]
	fs := flag.NewFlagSet("clients", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap host:port")
	topic := fs.String("topic", "go-clients", "topic (scenarios create it)")
	fs.StringVar(&scramUser, "user", "", "SCRAM user (franz scram)")
	fs.StringVar(&scramPassword, "password", "", "SCRAM password (franz scram)")
	fs.StringVar(&scramMechanism, "mechanism", "SCRAM-SHA-256", "SCRAM-SHA-256 or SCRAM-SHA-512 (franz scram)")
	fs.StringVar(&scramCA, "ca", "", "PEM CA file of the SASL_SSL listener (franz scram)")
	_ = fs.Parse(os.Args[3:])
	run := map[string]func(string, string){
		"franz/produce":       franzProduce,
		"franz/group":         franzGroup,
		"franz/admin":         franzAdmin,
		"franz/record-errors": franzRecordErrors,
		"franz/scram":         franzScram,
		"sarama/produce":      saramaProduce,
		"sarama/group":        saramaGroup,
		"sarama/admin":        saramaAdmin,
	}[client+"/"+scenario]
	if run == nil {
		fail("unknown client/scenario %s/%s", client, scenario)
	}
	run(*brokers, *topic)
	fmt.Printf("PASS %s %s\n", client, scenario)
}

func fail(format string, args ...any) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func okf(format string, args ...any) {
	fmt.Printf("ok: "+format+" [%s]\n", append(args, time.Since(started).Round(time.Millisecond))...)
}

// started is when the program began; "ok:" lines carry the elapsed time, for reading slow runs.
var started = time.Now()

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// header is one record header as produced and as read back.
type header struct{ key, value string }

// sent is what scenario 1 produces as record i; got is what a consumer read.
type rec struct {
	index     int
	key       string
	value     string
	headers   []header
	partition int32
	offset    int64
}

// produced returns record i of scenario 1: keys repeat (so the same key must always land in
// the same partition), values and headers name the record and its codec, one header value is
// empty and one header key repeats.
func produced(i int, codec string) rec {
	return rec{
		index: i,
		key:   fmt.Sprintf("key-%d", i%37),
		value: fmt.Sprintf("value %d codec %s %s", i, codec, strings.Repeat("x", i%50)),
		headers: []header{
			{"index", strconv.Itoa(i)},
			{"codec", codec},
			{"empty", ""},
			{"index", "again"},
		},
	}
}

// codecFor spreads the records over the codecs in runs, so each codec's batches hold many records.
func codecFor(i int, codecs []string) string {
	per := (produceRecords + len(codecs) - 1) / len(codecs)
	return codecs[i/per]
}

// checkReadBack compares what a consumer read with what was produced: every record exactly
// once, identical key/value/headers, each partition in produce order with dense offsets from
// 0, one partition per key, and every one of `partitions` partitions used.
func checkReadBack(got []rec, codecs []string, partitions int) {
	if len(got) != produceRecords {
		fail("read %d records, want %d", len(got), produceRecords)
	}
	seen := map[int]bool{}
	keyPartition := map[string]int32{}
	lastIndex := map[int32]int{}
	nextOffset := map[int32]int64{}
	for _, g := range got {
		i, err := strconv.Atoi(headerValue(g.headers, "index"))
		if err != nil || i < 0 || i >= produceRecords {
			fail("record at %d/%d has no valid index header: %+v", g.partition, g.offset, g)
		}
		if seen[i] {
			fail("record %d read twice", i)
		}
		seen[i] = true
		want := produced(i, codecFor(i, codecs))
		if g.key != want.key || g.value != want.value || fmt.Sprint(g.headers) != fmt.Sprint(want.headers) {
			fail("record %d differs:\n got  %q %q %v\n want %q %q %v", i, g.key, g.value, g.headers, want.key, want.value, want.headers)
		}
		if p, ok := keyPartition[g.key]; ok && p != g.partition {
			fail("key %s in partitions %d and %d", g.key, p, g.partition)
		}
		keyPartition[g.key] = g.partition
		if last, ok := lastIndex[g.partition]; ok && last > i {
			fail("partition %d: record %d after record %d (produce order broken)", g.partition, i, last)
		}
		lastIndex[g.partition] = i
		if g.offset != nextOffset[g.partition] {
			fail("partition %d: offset %d, want %d (dense from 0)", g.partition, g.offset, nextOffset[g.partition])
		}
		nextOffset[g.partition]++
	}
	if len(lastIndex) != partitions {
		fail("records landed in %d partitions, want %d", len(lastIndex), partitions)
	}
	okf("%d records read back exactly once, identical, in order per partition (%s), codecs %v", len(got), countsByPartition(nextOffset), codecs)
}

func headerValue(hs []header, key string) string {
	for _, h := range hs {
		if h.key == key {
			return h.value
		}
	}
	return ""
}

func countsByPartition(m map[int32]int64) string {
	ps := make([]int, 0, len(m))
	for p := range m {
		ps = append(ps, int(p))
	}
	sort.Ints(ps)
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("p%d=%d", p, m[int32(p)]))
	}
	return strings.Join(parts, " ")
}

// groupValue is the value of scenario 2's record at offset seq of partition p; the consumers
// parse it back, so a record read from the wrong place is caught.
func groupValue(p int32, seq int64) string { return fmt.Sprintf("%d:%d", p, seq) }

// groupLedger records which member read which group record, and checks exactly-once delivery.
type groupLedger struct {
	reads map[string][]string // "p:seq" -> members that read it
}

func newGroupLedger() *groupLedger { return &groupLedger{reads: map[string][]string{}} }

func (l *groupLedger) read(member string, p int32, offset int64, value string) {
	if value != groupValue(p, offset) {
		fail("member %s read %q at %d/%d, want %q", member, value, p, offset, groupValue(p, offset))
	}
	l.reads[value] = append(l.reads[value], member)
}

// count is how many distinct records were read so far.
func (l *groupLedger) count() int { return len(l.reads) }

// checkExactlyOnce demands that records 0..ends[p]-1 of every partition were read exactly once.
func (l *groupLedger) checkExactlyOnce(ends map[int32]int64) {
	total := 0
	for p, end := range ends {
		for seq := int64(0); seq < end; seq++ {
			who := l.reads[groupValue(p, seq)]
			if len(who) != 1 {
				fail("record %s read %d times (by %v), want exactly once", groupValue(p, seq), len(who), who)
			}
		}
		total += int(end)
	}
	if total != len(l.reads) {
		fail("read %d distinct records, produced %d", len(l.reads), total)
	}
}

// owners tracks which in-process member owns each partition and fails on a double owner.
type owners struct{ of map[int32]string }

func newOwners() *owners { return &owners{of: map[int32]string{}} }

func (o *owners) assign(member string, ps []int32) {
	for _, p := range ps {
		if other, ok := o.of[p]; ok && other != member {
			fail("partition %d assigned to %s while %s still owns it", p, member, other)
		}
		o.of[p] = member
	}
}

func (o *owners) revoke(member string, ps []int32) {
	for _, p := range ps {
		if o.of[p] == member {
			delete(o.of, p)
		}
	}
}

// balanced reports whether every partition has an owner and each of `members` owns the same count.
func (o *owners) balanced(members ...string) bool {
	if len(o.of) != groupPartitions {
		return false
	}
	count := map[string]int{}
	for _, m := range o.of {
		count[m]++
	}
	for _, m := range members {
		if count[m] != groupPartitions/len(members) {
			return false
		}
	}
	return true
}

func (o *owners) String() string {
	ps := make([]int, 0, len(o.of))
	for p := range o.of {
		ps = append(ps, int(p))
	}
	sort.Ints(ps)
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("p%d=%s", p, o.of[int32(p)]))
	}
	return strings.Join(parts, " ")
}

// member is one running consumer-group member of scenario 2; close commits and leaves.
type member interface{ close() }

// groupScenario runs scenario 2 with one client library: `start` starts a member that records
// its assignments in own and its reads in ledger (both under mu), `produce` appends `count`
// numbered records to every partition, advancing ends. Two members split the 4 partitions,
// read 200 records; b closes, 80 more arrive, b restarts as b2, 120 more arrive; every record
// must be read exactly once. Returns the log ends, which the caller compares with the commits.
//
// describe answers DescribeGroups through the client's admin API: the group state and each
// member's assigned partitions by client id (members use their name as client id). While the
// group is balanced it must be Stable and agree with what the members were told.
func groupScenario(start func(name string, mu *sync.Mutex, own *owners, ledger *groupLedger) member,
	produce func(ends map[int32]int64, count int),
	describe func() (state string, assigned map[string][]int32)) map[int32]int64 {
	var mu sync.Mutex
	own, ledger := newOwners(), newGroupLedger()
	ends := map[int32]int64{}
	locked := func(f func() bool) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return f() }
	}

	a := start("a", &mu, own, ledger)
	b := start("b", &mu, own, ledger)
	waitFor("a and b to own 2 partitions each", locked(func() bool { return own.balanced("a", "b") }))
	mu.Lock()
	okf("two members, each partition owned once: %v", own)
	mu.Unlock()
	checkDescribed(describe, &mu, own)
	produce(ends, 50)
	waitFor("200 records read", locked(func() bool { return ledger.count() == 200 }))
	mu.Lock()
	ledger.checkExactlyOnce(ends)
	mu.Unlock()
	okf("first 200 records read exactly once")

	b.close()
	waitFor("a to own all partitions after b left", locked(func() bool { return own.balanced("a") }))
	produce(ends, 20)
	b2 := start("b2", &mu, own, ledger)
	waitFor("a and restarted b2 to own 2 partitions each", locked(func() bool { return own.balanced("a", "b2") }))
	checkDescribed(describe, &mu, own)
	produce(ends, 30)
	waitFor("all 400 records read", locked(func() bool { return ledger.count() == 400 }))
	time.Sleep(time.Second) // a late duplicate would show up here
	mu.Lock()
	ledger.checkExactlyOnce(ends)
	b2Reads := 0
	for _, who := range ledger.reads {
		if who[0] == "b2" {
			b2Reads++
		}
	}
	mu.Unlock()
	if b2Reads == 0 {
		fail("restarted member b2 read nothing")
	}
	okf("after b restarted as b2: all 400 records read exactly once (b2 read %d)", b2Reads)
	a.close()
	b2.close()
	return ends
}

// checkDescribed waits until DescribeGroups shows the group Stable with exactly the members'
// own view of their assignments (a rebalance may still be settling when it is first asked).
func checkDescribed(describe func() (string, map[string][]int32), mu *sync.Mutex, own *owners) {
	var last string
	waitFor("DescribeGroups to agree with the members", func() bool {
		state, assigned := describe()
		mu.Lock()
		want := map[string][]int32{}
		for p, m := range own.of {
			want[m] = append(want[m], p)
		}
		mu.Unlock()
		for _, ps := range want {
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		}
		for _, ps := range assigned {
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		}
		last = fmt.Sprintf("state %s assigned %v, members see %v", state, assigned, want)
		return state == "Stable" && fmt.Sprint(assigned) == fmt.Sprint(want)
	})
	okf("DescribeGroups: %s", last)
}

// waitFor polls cond (under the caller's locking) until it holds or waitTimeout passes.
func waitFor(what string, cond func() bool) {
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			fail("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
