package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/config"
)

// Help that is asked for goes to stdout and exits 0, for every command and
// subcommand; a mistake prints the usage on stderr and exits 2.
func TestHelpExitsZeroOnStdout(t *testing.T) {
	env := []string{"SLUICE_DATA_DIR=" + t.TempDir(), "SLUICE_ADMIN_TOKEN="}
	cmds := [][]string{
		{}, {"serve"}, {"version"}, {"bench"}, {"admin-token"}, {"admin-token", "reset"},
		{"project"}, {"project", "create"}, {"project", "list"}, {"project", "show"}, {"project", "update"}, {"project", "delete"},
		{"token"}, {"token", "create"}, {"token", "list"}, {"token", "revoke"},
		{"event-type"}, {"event-type", "create"}, {"event-type", "list"}, {"event-type", "delete"},
		{"events"}, {"events", "tail"}, {"hash"}, {"hash", "email"}, {"hash", "phone"},
		{"hook"},
	}
	for _, sub := range []string{"list", "show", "create", "update", "activate", "stop", "clone", "delete", "rotate-secret", "test", "deliveries", "dead-letters", "replay"} {
		cmds = append(cmds, []string{"hook", sub})
	}
	for _, c := range cmds {
		for _, h := range []string{"--help", "-h", "-help"} {
			args := append(append([]string(nil), c...), h)
			out, errOut, code := sluice(t, env, args...)
			if len(c) > 0 && c[0] == "version" {
				if code != 0 || !strings.HasPrefix(out, "sluice ") {
					t.Errorf("%q: exit %d, stdout %q", args, code, out)
				}
				continue
			}
			if code != 0 || !strings.Contains(out, "Usage: sluice") || errOut != "" {
				t.Errorf("%q: exit %d\nstdout: %q\nstderr: %q", args, code, out, errOut)
			}
			if strings.Contains(out, "unknown") {
				t.Errorf("%q calls the help flag unknown: %q", args, out)
			}
		}
	}
	// A command with subcommands lists each, with what it does.
	for group, subs := range map[string][]string{
		"project":    {"create --name N", "list ", "show ID", "update ID", "delete ID"},
		"token":      {"create --project N", "list --project N", "revoke --project N TOKEN_ID"},
		"event-type": {"create --project N --slug S", "list --project N", "delete --project N SLUG"},
		"events":     {"tail [--follow]"},
		"profile":    {"show --project N TYPE VALUE", "events --project N TYPE VALUE", "delete --project N TYPE VALUE"},
		"hook":       {"list ", "show ID", "create --file F", "update ID", "activate ID", "deliveries ID", "dead-letters ID", "replay ID"},
	} {
		out, _, code := sluice(t, env, group, "-h")
		if code != 0 || !strings.Contains(out, "Commands:") {
			t.Errorf("%s -h: exit %d, no command list: %q", group, code, out)
		}
		for _, sub := range subs {
			if !strings.Contains(out, "\n  "+sub) {
				t.Errorf("%s -h does not list %q: %q", group, sub, out)
			}
		}
	}
	if out, _, code := sluice(t, env, "help"); code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "create, list, show, update or delete projects") {
		t.Errorf("sluice help: exit %d, stdout %q", code, out)
	}

	// A mistake in the arguments says what it is before the usage.
	for args, reason := range map[string]string{
		"project show":                   "sluice project show: needs the project ID\n",
		"project show 1 2":               `sluice project show: takes only the project ID (got ["2"] too)` + "\n",
		"project list extra":             `sluice project list: takes no arguments (got ["extra"])` + "\n",
		"token create --name y":          "sluice token create: --project is required\n",
		"project create --id 4":          "sluice project create: --name is required\n",
		"token revoke --project 0":       "sluice token revoke: needs the token ID\n",
		"event-type delete --project 0":  "sluice event-type delete: needs the event type's slug\n",
		"profile show --project 0 email": "sluice profile show: needs an identity type and a value, such as email a@example.com\n",
		"admin-token":                    "sluice admin-token: needs a subcommand: reset\n",
		"hook replay a b c":              `sluice hook replay: takes only the hook ID and at most one dead letter ID (got ["c"] too)` + "\n",
		"hash email":                     "sluice hash email: needs the value to hash\n",
	} {
		out, errOut, code := sluice(t, env, strings.Fields(args)...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, reason) || !strings.Contains(errOut, "Usage: sluice") {
			t.Errorf("%s: exit %d\nstdout: %q\nstderr: %q\nwant it to start %q", args, code, out, errOut, reason)
		}
	}

	// Mistakes: usage on stderr, exit 2, nothing on stdout.
	for _, args := range [][]string{{}, {"project", "create", "--bogus"}, {"project", "frobnicate"}, {"events", "frobnicate"}, {"events"}, {"serve", "--bogus"}, {"events", "tail", "--last", "x"}, {"nosuch"}} {
		out, errOut, code := sluice(t, env, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "Usage:") {
			t.Errorf("%q: exit %d\nstdout: %q\nstderr: %q", args, code, out, errOut)
		}
	}
	// A negative count is refused, as a negative --last is.
	if out, errOut, code := sluice(t, env, "events", "tail", "-n", "-1"); code == 0 || out != "" || !strings.Contains(errOut, "-n must be 0 (no limit) or more") {
		t.Errorf("events tail -n -1: exit %d\nstdout: %q\nstderr: %q", code, out, errOut)
	}
	// A --help after "--" is an argument, not a request for help.
	if _, _, code := sluice(t, env, "hash", "email", "--", "--help"); code == 0 {
		t.Errorf("hash email -- --help exited 0")
	}

	// project create: one default text for --id, not two.
	out, _, _ := sluice(t, env, "project", "create", "--help")
	if !strings.Contains(out, "(default: the next free one)") || strings.Contains(out, "(default -1)") {
		t.Errorf("project create --help doubles the default of --id:\n%s", out)
	}
}

// serve --help shows the defaults of the config package, written as the docs
// write them: every flag in docs/operations.md's settings table has the
// default the table gives it.
func TestServeHelpDefaultsMatchTheDocs(t *testing.T) {
	out, _, code := sluice(t, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help: exit %d", code)
	}
	defaults := map[string]string{} // flag → default shown
	var flag string
	for _, l := range strings.Split(out, "\n") {
		if m := regexp.MustCompile(`^  -([a-z0-9-]+)`).FindStringSubmatch(l); m != nil {
			flag = m[1]
		}
		if m := regexp.MustCompile(`\(default "?([^")]*)"?\)$`).FindStringSubmatch(l); m != nil && flag != "" {
			defaults[flag] = m[1]
		}
	}
	if got := defaults["hooks-content-retention"]; got != "72h" || time.Duration(config.Default().Hooks.ContentRetention) != 72*time.Hour {
		t.Errorf("serve --help shows content retention %q, want 72h (the config default is %v)", got, time.Duration(config.Default().Hooks.ContentRetention))
	}
	if got := defaults["retention"]; got != "30d" {
		t.Errorf("serve --help shows retention %q, want 30d", got)
	}

	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z_.]+)`[^|]*\\| ([^|]*) \\| ([^|]*) \\|")
	checked := 0
	for _, l := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		flags := regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(m[2], -1)
		docDefaults := regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(m[3], -1)
		if len(flags) == 0 {
			continue // file only
		}
		for i, f := range flags {
			want := ""
			switch {
			case strings.TrimSpace(m[3]) == "none":
			case len(docDefaults) == len(flags):
				want = docDefaults[i][1]
			case len(docDefaults) == 1:
				want = docDefaults[0][1]
			default:
				t.Errorf("operations.md row %q: cannot pair defaults with flags", l)
				continue
			}
			got, ok := defaults[f[1]]
			if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f[1]) + `( |$)`).MatchString(out) {
				t.Errorf("operations.md documents --%s, which serve does not take", f[1])
				continue
			}
			if got != want || ok != (want != "") {
				t.Errorf("--%s: serve --help shows default %q, operations.md says %q", f[1], got, want)
			}
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("only %d flags of operations.md's table checked", checked)
	}
}

// events tail --follow starts with the newest matching events, like tail
// -f, then prints what arrives, each event once.
func TestEventsTailFollowShowsTheLastFirst(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	env := []string{"SLUICE_DATA_DIR=" + dir, "SLUICE_ADMIN_TOKEN=" + testAdminToken}
	send := func(key string, n int) {
		t.Helper()
		if r := do(t, "GET", fmt.Sprintf("%s/tailf/%s/0?n=%d", s.ingest, key, n), "", ""); r.status != 200 {
			t.Fatalf("send: %d %s", r.status, r.body)
		}
	}
	for n := 1; n <= 12; n++ {
		send("mine", n)
		send("other", n)
	}
	ns := func(out string) []int {
		t.Helper()
		var got []int
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var e struct {
				Key  string
				Data struct{ N string }
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil || e.Key != "in.gen.tailf.mine" {
				t.Fatalf("line %q: %v", l, err)
			}
			var n int
			fmt.Sscan(e.Data.N, &n)
			got = append(got, n)
		}
		return got
	}
	seq := func(from, to int) []int {
		var out []int
		for n := from; n <= to; n++ {
			out = append(out, n)
		}
		return out
	}
	// Without --follow, --last prints the newest and exits.
	out, errOut, code := sluice(t, env, "events", "tail", "--last", "3", "--key", "in.gen.tailf.mine")
	if code != 0 || fmt.Sprint(ns(out)) != fmt.Sprint(seq(10, 12)) {
		t.Fatalf("tail --last 3: exit %d %v %s", code, ns(out), errOut)
	}

	follow := func(want []int, extra ...string) (*exec.Cmd, *syncBuffer) {
		t.Helper()
		cmd := exec.Command(os.Args[0], append([]string{"events", "tail", "--follow", "--key", "in.gen.tailf.mine"}, extra...)...)
		cmd.Env = childEnv(env...)
		buf := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = buf, buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitFor(t, func() bool { return len(ns(buf.String())) >= len(want) }, buf)
		return cmd, buf
	}
	_, def := follow(seq(3, 12))
	_, two := follow(seq(11, 12), "--last", "2")
	_, none := follow(nil, "--last", "0")
	time.Sleep(300 * time.Millisecond) // --last 0 must have read the head before the next event
	if got := ns(def.String()); fmt.Sprint(got) != fmt.Sprint(seq(3, 12)) {
		t.Fatalf("--follow printed %v first, want the 10 newest %v", got, seq(3, 12))
	}
	send("mine", 13)
	send("other", 13)
	send("mine", 14)
	for _, c := range []struct {
		buf  *syncBuffer
		want []int
	}{{def, seq(3, 14)}, {two, seq(11, 14)}, {none, seq(13, 14)}} {
		waitFor(t, func() bool { return len(ns(c.buf.String())) >= len(c.want) }, c.buf)
		time.Sleep(200 * time.Millisecond) // nothing more may come
		if got := ns(c.buf.String()); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("follow printed %v, want %v", got, c.want)
		}
	}

	// The server stops and starts again, on other ports: --follow waits
	// for it, says so on stderr, and goes on after the last event it
	// printed, none missed or printed twice.
	cmd := exec.Command(os.Args[0], "events", "tail", "--follow", "--last", "1", "--key", "in.gen.tailf.mine")
	cmd.Env = childEnv(env...)
	fo, fe := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = fo, fe
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	waitFor(t, func() bool { return len(ns(fo.String())) >= 1 }, fo)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(fe.String(), "no answer from the server") }, fe)
	// While no server has written run.json again, the follower sends its
	// admin token nowhere, not even to whatever listens on the old port.
	stranger, err := net.Listen("tcp", strings.TrimPrefix(s.admin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	var knocks atomic.Int32
	go func() {
		for {
			c, err := stranger.Accept()
			if err != nil {
				return
			}
			knocks.Add(1)
			c.Close()
		}
	}()
	time.Sleep(2500 * time.Millisecond) // two of its one-second retries
	stranger.Close()
	if n := knocks.Load(); n != 0 {
		t.Fatalf("the follower connected %d times to the old admin port while no server ran", n)
	}
	s = startServer(t, dir)
	send("mine", 15)
	send("other", 15)
	send("mine", 16)
	waitFor(t, func() bool { return len(ns(fo.String())) >= 3 }, fo)
	time.Sleep(200 * time.Millisecond) // nothing more may come
	select {
	case err := <-exited:
		t.Fatalf("--follow exited when the server restarted: %v\n%s", err, fe.String())
	default:
	}
	if got := ns(fo.String()); fmt.Sprint(got) != fmt.Sprint([]int{14, 15, 16}) {
		t.Fatalf("--follow across a restart printed %v, want [14 15 16]", got)
	}
	if e := fe.String(); strings.Count(e, "no answer from the server") != 1 || !strings.HasSuffix(e, "sluice events: the server answers again\n") {
		t.Fatalf("--follow's notes across a restart: %q", e)
	}
}

func waitFor(t *testing.T, ok func() bool, buf *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out; output so far:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The CLI never makes a data directory up: without a server, a directory
// that does not exist is an error for every command (a mistyped
// --data-dir is not a new installation), one that sluice never used is an
// error for the commands that read, left untouched; a command that writes
// prepares an existing empty directory for a first start.
func TestCLINeverMakesADataDirectoryUp(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "sluice-dtaa")
	empty := t.TempDir()
	commands := [][]string{
		{"project", "list"}, {"project", "show", "0"}, {"project", "create", "--name", "x"}, {"project", "update", "0", "--name", "y"},
		{"token", "list", "--project", "0"}, {"token", "create", "--project", "0"}, {"event-type", "list", "--project", "0"},
		{"events", "tail"}, {"hook", "list"}, {"profile", "show", "--project", "0", "email", "a@b.c"}, {"admin-token", "reset"},
	}
	for _, args := range commands {
		_, errOut, code := sluice(t, []string{"SLUICE_DATA_DIR=" + missing, "SLUICE_ADMIN_TOKEN="}, args...)
		want := "no data directory at " + missing + ", so no server runs on it: pass --data-dir with the directory your server uses"
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("%q on a missing directory: exit %d, stderr %q", args, code, errOut)
		}
		if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%q made %s", args, missing)
		}
	}
	for _, args := range commands {
		if len(args) > 1 && args[1] == "create" {
			continue
		}
		_, errOut, code := sluice(t, []string{"SLUICE_DATA_DIR=" + empty, "SLUICE_ADMIN_TOKEN="}, args...)
		want := empty + " holds no sluice data (no state.db) and no server runs on it"
		if args[0] == "hook" || args[0] == "profile" {
			want = "no server is running on " + empty
		}
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("%q on a directory sluice never used: exit %d, stderr %q, want %q", args, code, errOut, want)
		}
		if files, _ := os.ReadDir(empty); len(files) != 0 {
			t.Fatalf("%q wrote into %s: %v", args, empty, files)
		}
	}
	// A directory with other files is not prepared either (a mistyped
	// --data-dir can be a home directory).
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "notes.txt"), []byte("mine"), 0o600)
	for _, args := range [][]string{{"project", "create", "--name", "x"}, {"token", "create", "--project", "0"}, {"event-type", "create", "--project", "0", "--slug", "s"}} {
		_, errOut, code := sluice(t, []string{"SLUICE_DATA_DIR=" + busy, "SLUICE_ADMIN_TOKEN="}, args...)
		if code != 1 || !strings.Contains(errOut, busy+" holds no sluice data (no state.db) and is not empty, so it is not prepared for a first start") {
			t.Errorf("%q in a directory with other files: exit %d %q", args, code, errOut)
		}
		if files, _ := os.ReadDir(busy); len(files) != 1 {
			t.Fatalf("%q wrote into %s: %v", args, busy, files)
		}
	}
	env := []string{"SLUICE_DATA_DIR=" + empty, "SLUICE_ADMIN_TOKEN="}
	if out, errOut, code := sluice(t, env, "project", "create", "--name", "before-the-first-start"); code != 0 || !strings.Contains(out, "project 1 (before-the-first-start) created") {
		t.Fatalf("create in an empty directory: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := sluice(t, env, "project", "list"); code != 0 || !strings.Contains(out, "before-the-first-start") || !strings.Contains(out, "default") {
		t.Fatalf("list after: exit %d %s %s", code, out, errOut)
	}
}

// A project that hooks are scoped to is not deleted, through the server
// or offline, until they are gone.
func TestProjectWithHooksIsNotDeleted(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	env := []string{"SLUICE_DATA_DIR=" + dir, "SLUICE_ADMIN_TOKEN=" + testAdminToken}
	if out, errOut, code := sluice(t, env, "project", "create", "--id", "6000", "--name", "tenant-a"); code != 0 {
		t.Fatalf("project create: %d %s %s", code, out, errOut)
	}
	out, errOut, code := sluice(t, env, "hook", "create", "--url", "https://tenant-a.example.com/hook", "--events", "in.*", "--project", "6000", "--inactive")
	if code != 0 {
		t.Fatalf("hook create: %d %s %s", code, out, errOut)
	}
	id := strings.Fields(out)[1]
	want := "project 6000 has 1 hook(s) (" + id + "): delete them, or give them another project, first"
	if _, errOut, code := sluice(t, env, "project", "delete", "6000"); code != 1 || errOut != "sluice project: "+want+" (409)\n" {
		t.Fatalf("online delete: exit %d %q", code, errOut)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := sluice(t, env, "project", "delete", "6000"); code != 1 || errOut != "sluice project: "+want+"\n" {
		t.Fatalf("offline delete: exit %d %q", code, errOut)
	}
	startServer(t, dir)
	if out, errOut, code := sluice(t, env, "hook", "delete", id); code != 0 {
		t.Fatalf("hook delete: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := sluice(t, env, "project", "delete", "6000"); code != 0 || out != "project 6000 deleted\n" {
		t.Fatalf("delete after: %d %q %q", code, out, errOut)
	}
}
