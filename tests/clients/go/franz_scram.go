// franz-go over SASL_SSL with SCRAM (issue 15): produce five records and read them back in a
// group. Credentials and the CA come from -user, -password, -mechanism (SCRAM-SHA-256 or
// SCRAM-SHA-512) and -ca (a PEM file).

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

var scramUser, scramPassword, scramMechanism, scramCA string

func franzScramOpts() []kgo.Opt {
	pem, err := os.ReadFile(scramCA)
	check(err, "read the CA")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail("no certificate in %s", scramCA)
	}
	auth := scram.Auth{User: scramUser, Pass: scramPassword}
	mechanism := auth.AsSha256Mechanism()
	if scramMechanism == "SCRAM-SHA-512" {
		mechanism = auth.AsSha512Mechanism()
	}
	return []kgo.Opt{
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(mechanism),
	}
}

func franzScram(brokers, topic string) {
	opts := franzScramOpts()
	p := franzClient(brokers, append(opts, kgo.AllowAutoTopicCreation())...)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for i := 0; i < 5; i++ {
		r := &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("franz-%d", i))}
		check(p.ProduceSync(ctx, r).FirstErr(), "produce over SCRAM")
	}
	okf("5 records produced over %s", scramMechanism)
	c := franzClient(brokers, append(opts, kgo.ConsumeTopics(topic), kgo.ConsumerGroup("g-"+topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	defer c.Close()
	var got []string
	deadline := time.Now().Add(waitTimeout)
	for len(got) < 5 && time.Now().Before(deadline) {
		fetches := c.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 {
			fail("fetch over SCRAM: %v", errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	for i := 0; i < 5; i++ {
		if i >= len(got) || got[i] != fmt.Sprintf("franz-%d", i) {
			fail("read %v", got)
		}
	}
	okf("5 records read back in a group")
}
