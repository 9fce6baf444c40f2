package datadir

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestLockIsExclusive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	info := RunInfo{PID: 42, Ingest: "http://127.0.0.1:1", Admin: "http://127.0.0.1:2"}
	if err := l.WriteRunInfo(info); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRunInfo(dir)
	if err != nil || got != info {
		t.Fatalf("run info %+v %v", got, err)
	}
	l.RemoveRunInfo()
	if _, err := ReadRunInfo(dir); err == nil {
		t.Fatal("run info survived removal")
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release()
}
