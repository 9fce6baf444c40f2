// Package pgtest runs a real PostgreSQL 15 (Debian's postgresql-15) for
// tests: initdb in a temp dir, the server on a free loopback port with
// fsync and synchronous_commit on as in production, stopped at the end.
// scripts/deps.sh installs the package. initdb refuses to run as root, so
// when the tests run as root the server runs as the user postgres.
//
// One server serves a whole test binary and each test gets a database of
// its own:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.Start(t) // a fresh, empty database; dropped at the end of t
//		pool, err := pgxpool.New(ctx, dsn)
//		…
//	}
//
// The server starts at the first Start (about a second) and Main stops it
// and removes its files once the tests have run. A binary without Main
// still stops its server when it exits (the server gets SIGQUIT when its
// parent dies), but leaves the temp dir behind.
//
// A test that stops, kills or restarts the server, or changes its
// settings, starts one of its own with NewServer.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bin is where Debian installs PostgreSQL 15's programs.
const Bin = "/usr/lib/postgresql/15/bin"

// Server is a running (or stopped) PostgreSQL server.
type Server struct {
	// Port is the server's TCP port on 127.0.0.1.
	Port int
	// Dir holds the data directory, the socket and the server's log.
	Dir string

	cred   *syscall.Credential // whom the server runs as; nil: as us
	cmd    *exec.Cmd
	exited chan struct{}

	mu    sync.Mutex
	admin *pgx.Conn // to the postgres database, for CREATE DATABASE
	dbs   int
}

// The binary's shared server, started by the first Start.
var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Start returns the DSN of a fresh, empty database on the test binary's
// server, starting the server at the first call. The database is dropped
// when t ends. It fails t, saying what to install, when PostgreSQL is
// missing.
func Start(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = launch()
	}
	srv, err := shared.srv, shared.err
	shared.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return srv.CreateDB(t)
}

// Main runs the tests of m, stops the shared server (if a test started it)
// and exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	if shared.srv != nil {
		shared.srv.Close()
		shared.srv = nil
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// NewServer starts a server of t's own, closed when t ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// DSN is the connection string of database db, as the superuser postgres
// (trusted on loopback, no password).
func (s *Server) DSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: "127.0.0.1:" + strconv.Itoa(s.Port), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// CreateDB creates a fresh database and returns its DSN; it is dropped
// when t ends (its sessions are ended first).
func (s *Server) CreateDB(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.dbs++
	name := "t" + strconv.Itoa(s.dbs)
	err := s.exec("CREATE DATABASE " + name)
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

// Exec runs sql on the postgres database as the superuser (to change a
// setting, say).
func (s *Server) Exec(t testing.TB, sql string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.exec(sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// exec runs sql on the admin connection, (re)connecting as needed; mu is
// held.
func (s *Server) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.admin == nil || s.admin.IsClosed() {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			return err
		}
		s.admin = c
	}
	_, err := s.admin.Exec(ctx, sql)
	if err != nil && s.admin.IsClosed() {
		s.admin = nil
	}
	return err
}

// launch creates a cluster in a new temp dir and starts its server.
func launch() (*Server, error) {
	initdb := filepath.Join(Bin, "initdb")
	if _, err := os.Stat(initdb); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 is not installed (%v): run scripts/deps.sh as root, or apt-get install postgresql-15", err)
	}
	dir, err := os.MkdirTemp("", "sluice-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir}
	fail := func(err error) (*Server, error) {
		s.Close()
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("initdb refuses to run as root and there is no user postgres (%v): install postgresql-15", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
	}
	// --no-sync only at initdb: the server itself runs with fsync on.
	cmd := s.command(initdb, "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	s.Port = port
	conf := strings.Join([]string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(port),
		"unix_socket_directories = '" + s.Dir + "'",
		"fsync = on",
		"synchronous_commit = on",
		"max_connections = 300",
		"shared_buffers = 128MB",
		"logging_collector = off",
		"log_min_messages = warning",
	}, "\n") + "\n"
	f, err := os.OpenFile(filepath.Join(s.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fail(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if err := s.start(); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

// command runs a PostgreSQL program as the server's user, in its dir.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

// start starts the server and waits until it takes connections.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := s.command(filepath.Join(Bin, "postgres"), "-D", s.data())
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group (a Ctrl-C of go test does not reach it
	// before Main stops it), and SIGQUIT, an immediate shutdown, when
	// the test binary dies without stopping it.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("postgres exited while starting:\n%s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not take connections within 60 s (%v):\n%s", err, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) logPath() string { return filepath.Join(s.Dir, "postgres.log") }

// Log is what the server wrote to its log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

// Stop shuts the server down (a fast shutdown: sessions are ended,
// committed work is flushed); Restart starts it again.
func (s *Server) Stop() { s.signal(syscall.SIGINT) }

// Kill kills the server at once, as a crash would: the next start
// recovers from the WAL.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.admin.Close(ctx)
		cancel()
		s.admin = nil
	}
	s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	// The server's children lead process groups of their own (PostgreSQL
	// calls setsid in each): a kill reaches them one by one, and a
	// restart waits until they are gone, or it finds their shared memory
	// in use.
	var children []int
	if sig == syscall.SIGKILL {
		children = childrenOf(pid)
		for _, c := range children {
			_ = syscall.Kill(c, sig)
		}
	}
	_ = syscall.Kill(-pid, sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
	for deadline := time.Now().Add(10 * time.Second); len(children) > 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if err := syscall.Kill(children[0], 0); errors.Is(err, syscall.ESRCH) {
			children = children[1:]
		}
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		if c, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Restart starts the stopped server again, with its data and port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Close stops the server and removes its files.
func (s *Server) Close() {
	s.Stop()
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// freePort finds a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
