//go:build !linux

package sqlite

import "os"

// fdatasync flushes f (on macOS, os.File.Sync uses F_FULLFSYNC).
func fdatasync(f *os.File) error { return f.Sync() }
