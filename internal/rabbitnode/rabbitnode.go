// Package rabbitnode runs a real RabbitMQ node (Debian's rabbitmq-server)
// for tests: on free loopback ports, in a temp dir, with its own epmd, and
// stopped afterwards. scripts/deps.sh installs the package.
package rabbitnode

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Server is where Debian installs the node's start script.
const Server = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// Node is a running (or stopped) RabbitMQ node.
type Node struct {
	Port     int // AMQP
	dir      string
	env      []string
	epmdPort int
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start starts a node and waits until it takes AMQP connections. It
// fails the test with what to install when the server is missing.
func Start(t testing.TB) *Node { return start(t, nil) }

// TLS is a node's AMQPS listener: PEM files of its certificate, key and CA.
type TLS struct {
	CertFile, KeyFile, CAFile string
	Port                      int // set by StartTLS
}

// StartTLS starts a node that also listens for AMQPS on tls.Port.
func StartTLS(t testing.TB, tls *TLS) *Node { return start(t, tls) }

func start(t testing.TB, tlsCfg *TLS) *Node {
	t.Helper()
	if _, err := os.Stat(Server); err != nil {
		t.Fatalf("RabbitMQ is not installed (%v): run scripts/deps.sh as root, or apt-get install rabbitmq-server", err)
	}
	dir, err := os.MkdirTemp("", "sluice-rabbit-")
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{dir: dir}
	t.Cleanup(func() {
		n.Stop()
		n.killEPMD()
		os.RemoveAll(dir)
	})
	// The free ports are free when picked, not always when the node binds
	// them (tests of other packages pick ports too): a node that finds one
	// taken starts again on others.
	for attempt := 1; ; attempt++ {
		n.configure(t, tlsCfg)
		err := n.try()
		if err == nil {
			return n
		}
		if attempt < 3 && strings.Contains(n.Log(), "eaddrinuse") {
			t.Logf("rabbitmq-server found a port taken; starting again on others (attempt %d)", attempt)
			n.killEPMD()
			os.RemoveAll(filepath.Join(dir, "mnesia"))
			os.Remove(filepath.Join(dir, "node.out"))
			continue
		}
		t.Fatal(err)
	}
}

// configure picks the node's ports and writes its configuration.
func (n *Node) configure(t testing.TB, tlsCfg *TLS) {
	t.Helper()
	dir := n.dir
	ports := freePorts(t, 4)
	n.Port, n.epmdPort = ports[0], ports[2]
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := ""
	if tlsCfg != nil {
		tlsCfg.Port = ports[3]
		conf = "listeners.ssl.default = 127.0.0.1:" + strconv.Itoa(ports[3]) + "\n" +
			"ssl_options.cacertfile = " + tlsCfg.CAFile + "\n" +
			"ssl_options.certfile = " + tlsCfg.CertFile + "\n" +
			"ssl_options.keyfile = " + tlsCfg.KeyFile + "\n" +
			"ssl_options.verify = verify_none\n" +
			"ssl_options.fail_if_no_peer_cert = false\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie
		"RABBITMQ_NODENAME=sluice-test-"+strconv.Itoa(ports[0])+"@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(ports[0]),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[1]),
		"ERL_EPMD_PORT="+strconv.Itoa(ports[2]),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
	)
}

// URL is the node's AMQP URL (guest, the default vhost).
func (n *Node) URL() string { return "amqp://guest:guest@127.0.0.1:" + strconv.Itoa(n.Port) + "/" }

func (n *Node) launch(t testing.TB) {
	t.Helper()
	if err := n.try(); err != nil {
		t.Fatal(err)
	}
}

// try starts the node and waits until it takes AMQP connections.
func (n *Node) try() error {
	out, err := os.OpenFile(filepath.Join(n.dir, "node.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(Server)
	cmd.Env, cmd.Stdout, cmd.Stderr = n.env, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if c, err := amqp.Dial(n.URL()); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-n.exited:
			n.cmd = nil
			return fmt.Errorf("rabbitmq-server exited while starting:\n%s", n.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rabbitmq-server did not take connections within 90 s:\n%s", n.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log is the node's console output.
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "node.out"))
	return string(b)
}

// Stop stops the node (SIGTERM, then SIGKILL after 30 s).
func (n *Node) Stop() { n.signal(syscall.SIGTERM, 30*time.Second) }

// Kill kills the node at once, as a crash would.
func (n *Node) Kill() { n.signal(syscall.SIGKILL, 10*time.Second) }

func (n *Node) signal(sig syscall.Signal, wait time.Duration) {
	if n.cmd == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, sig)
	select {
	case <-n.exited:
	case <-time.After(wait):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
	n.cmd = nil
}

// Restart starts the stopped node again, with its data and ports.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.launch(t)
}

// killEPMD stops the epmd daemon the node started on its own port.
func (n *Node) killEPMD() {
	epmd, err := exec.LookPath("epmd")
	if err != nil {
		return
	}
	cmd := exec.Command(epmd, "-kill")
	cmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(n.epmdPort))
	_ = cmd.Run()
}

// freePorts finds n distinct free loopback ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
