// Package clickhousenode runs a real ClickHouse server (Debian's
// clickhouse-server) for tests: on free loopback ports, in a temp dir,
// with one user, and stopped afterwards. scripts/deps.sh installs the
// package. Debian bookworm ships ClickHouse 18.16.1.
package clickhousenode

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is where Debian installs the server.
const Server = "/usr/sbin/clickhouse-server"

// User and Password are the server's one user.
const (
	User     = "sluice"
	Password = "ch-test-secret"
)

// Node is a running server.
type Node struct {
	// HTTPPort is the HTTP interface's port; HTTPSPort its TLS one
	// (StartTLS).
	HTTPPort, HTTPSPort int
	dir                 string
	cmd                 *exec.Cmd
	exited              chan struct{}
}

// Start starts a server and waits until it answers. It fails the test
// with what to install when the server is missing.
func Start(t testing.TB) *Node { return start(t, "", "") }

// StartTLS also serves HTTPS with the PEM files certFile and keyFile.
func StartTLS(t testing.TB, certFile, keyFile string) *Node { return start(t, certFile, keyFile) }

func start(t testing.TB, certFile, keyFile string) *Node {
	t.Helper()
	if _, err := os.Stat(Server); err != nil {
		t.Fatalf("ClickHouse is not installed (%v): run scripts/deps.sh as root, or apt-get install clickhouse-server", err)
	}
	dir, err := os.MkdirTemp("", "sluice-clickhouse-")
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	n := &Node{HTTPPort: ports[0], dir: dir}
	tlsConf := ""
	if certFile != "" {
		n.HTTPSPort = ports[2]
		tlsConf = fmt.Sprintf(`<https_port>%d</https_port>
    <openSSL><server><certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile><verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile><disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>`, ports[2], certFile, keyFile)
	}
	conf := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/error.log</errorlog><console>0</console></logger>
    <http_port>%[2]d</http_port>
    <tcp_port>%[3]d</tcp_port>
    %[4]s
    <listen_host>127.0.0.1</listen_host>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/data/user_files/</user_files_path>
    <format_schema_path>%[1]s/data/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>5368709120</mark_cache_size>
</yandex>
`, dir, ports[0], ports[1], tlsConf)
	users := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users><%[1]s><password>%[2]s</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></%[1]s></users>
    <quotas><default></default></quotas>
</yandex>
`, User, Password)
	for name, body := range map[string]string{"config.xml": conf, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.Create(filepath.Join(dir, "server.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(Server, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		n.stop()
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := n.Query("SELECT 1"); err == nil {
			return n
		}
		select {
		case <-n.exited:
			t.Fatalf("clickhouse-server exited while starting:\n%s", n.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickhouse-server did not answer within 60 s:\n%s", n.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the HTTP interface's address.
func (n *Node) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.HTTPPort) }

// Query runs q as the user and returns the answer.
func (n *Node) Query(q string) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/?"+url.Values{"query": {q}}.Encode(), nil)
	req.SetBasicAuth(User, Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// Log is the server's error log.
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	o, _ := os.ReadFile(filepath.Join(n.dir, "server.out"))
	return string(o) + string(b)
}

// stop kills the server: its data dir goes with it, and a graceful stop
// takes ClickHouse about 8 s.
func (n *Node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
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
