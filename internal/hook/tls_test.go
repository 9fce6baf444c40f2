package hook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/rabbitnode"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// selfSigned makes a certificate for 127.0.0.1 that is its own CA, and
// writes it as PEM to a file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path
}

// A Kafka hook over TLS trusts the brokers' CA from ca_file; without it
// the unknown authority fails the delivery.
func TestKafkaTLSWithCAFile(t *testing.T) {
	cert, caFile := selfSigned(t)
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "tls"), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	defer c.Close()
	f := newFixture(t, true)
	h := brokerHook(TypeKafka)
	h.Settings = &kafkasink.Settings{Brokers: c.ListenAddrs(), Topic: "tls", TLS: true, CAFile: caFile, Timeout: Duration(2 * time.Second)}
	ok, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.m.Test(context.Background(), ok.ID, nil); err != nil || !res.Delivered {
		t.Fatalf("with the CA: %+v %v", res, err)
	}
	kafkaOf(&h).CAFile = ""
	bad, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.m.Test(context.Background(), bad.ID, nil); err != nil || res.Delivered || !strings.Contains(res.Error, "certificate") {
		t.Fatalf("without the CA: %+v %v", res, err)
	}
	// A CA file without tls, or one that is not PEM, is refused at save.
	kafkaOf(&h).TLS, kafkaOf(&h).CAFile = false, caFile
	if _, err := f.m.Create(context.Background(), h, Start{}); err == nil || !strings.Contains(err.Error(), "kafka.ca_file: set tls: true") {
		t.Fatalf("ca_file without tls: %v", err)
	}
	kafkaOf(&h).TLS, kafkaOf(&h).CAFile = true, filepath.Join(t.TempDir(), "missing.pem")
	if _, err := f.m.Create(context.Background(), h, Start{}); err == nil || !strings.Contains(err.Error(), "kafka.ca_file") {
		t.Fatalf("missing ca_file: %v", err)
	}
}

// A RabbitMQ hook over AMQPS trusts the node's CA from ca_file.
func TestRabbitMQTLSWithCAFile(t *testing.T) {
	cert, caFile := selfSigned(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o644)
	tc := &rabbitnode.TLS{CertFile: caFile, KeyFile: keyFile, CAFile: caFile}
	node := rabbitnode.StartTLS(t, tc)
	f := newFixture(t, true)
	h := brokerHook(TypeRabbitMQQueue)
	h.Settings = &amqpsink.Settings{Host: "127.0.0.1", Port: tc.Port, Username: "guest", Password: "guest", Queue: "tls", TLS: true, CAFile: caFile, Timeout: Duration(3 * time.Second)}
	ok, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.m.Test(context.Background(), ok.ID, nil); err != nil || !res.Delivered || !strings.HasPrefix(res.Request.URL, "amqps://") {
		t.Fatalf("with the CA: %+v %v\n%s", res, err, node.Log())
	}
	rabbitOf(&h).CAFile = ""
	bad, _ := f.m.Create(context.Background(), h, Start{})
	if res, err := f.m.Test(context.Background(), bad.ID, nil); err != nil || res.Delivered || !strings.Contains(res.Error, "certificate") {
		t.Fatalf("without the CA: %+v %v", res, err)
	}
}
