// Package atomicfile replaces files whole: the agent's audit head, the
// compiled-rules cache and the CLI's generated rule files are never seen
// half-written.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// Write writes data beside path, syncs it and renames it over path, so
// that a reader sees the old file or the new one, never a part.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(tmp.Name(), mode)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
