// Package tmpfs gives tests a small file system of their own that they
// can fill up: a tmpfs mounted on a temp dir (mounting needs root, as the
// suite has in CI) and a filler file that takes its free space.
package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temp dir and unmounts it
// when the test ends. Without the right to mount (not root) the test is
// skipped with a message that names what is not tested; under CI
// (CI=true) it fails instead, so that CI never skips it silently.
func Mount(t testing.TB, size int64, notTested string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (%v; it needs root or CAP_SYS_ADMIN): NOT TESTED: %s", err, notTested)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		// MNT_DETACH: a process the test started may still hold a file.
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until the file system has no space left, and
// returns a function that deletes it again (giving the space back).
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-*")
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return func() {}
		}
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for len(buf) > 0 {
		// Halve the block at ENOSPC so the last pages are taken too.
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			buf = buf[:len(buf)/2]
		}
	}
	f.Close()
	name := f.Name()
	return func() {
		t.Helper()
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
}

// Free is how many bytes of dir's file system are free.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
