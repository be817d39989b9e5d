package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

const (
	checkpointFile = "checkpoint"
	checkpointTmp  = "checkpoint.tmp"
	checkpointSize = 16
)

// checkpointMagic starts the checkpoint file: magic, offset (uint64), and a
// CRC-32C of the first 12 bytes, all little-endian.
var checkpointMagic = [4]byte{'M', 'F', 'J', 'C'}

var errBadCheckpoint = errors.New("journal: malformed checkpoint file")

// readCheckpoint returns the persisted checkpoint, 0 if there is none.
func readCheckpoint(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("journal: read checkpoint: %w", err)
	}
	if len(b) != checkpointSize || [4]byte(b[:4]) != checkpointMagic ||
		crc32.Checksum(b[:12], castagnoli) != binary.LittleEndian.Uint32(b[12:]) {
		return 0, errBadCheckpoint
	}
	return binary.LittleEndian.Uint64(b[4:12]), nil
}

// writeCheckpoint replaces the checkpoint file atomically: a reader of the
// directory, before or after a crash, sees the old value or the new one.
// dir is the open directory, fsynced after the rename so the rename itself
// is durable.
func writeCheckpoint(dir *os.File, path string, offset uint64, sync bool) error {
	var b [checkpointSize]byte
	copy(b[:4], checkpointMagic[:])
	binary.LittleEndian.PutUint64(b[4:12], offset)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))

	tmp := filepath.Join(path, checkpointTmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(b[:])
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(path, checkpointFile)); err != nil {
		return err
	}
	if sync {
		return dir.Sync()
	}
	return nil
}
