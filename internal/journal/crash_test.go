package journal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Environment of the helper process that TestAckedRecordsSurviveKill9 runs.
const (
	crashDirEnv   = "JOURNAL_CRASH_HELPER_DIR"
	crashRoundEnv = "JOURNAL_CRASH_HELPER_ROUND"
)

func crashKey(round, worker, i int) string {
	return fmt.Sprintf("r%d-w%02d-%07d", round, worker, i)
}

// TestCrashHelper is the process TestAckedRecordsSurviveKill9 kills. It
// appends from 16 goroutines, with fsync, and prints "ack OFFSET KEY" for
// every Append that returned nil, until it is killed.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestAckedRecordsSurviveKill9")
	}
	round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
	j, err := Open(Options{Dir: dir, SegmentBytes: 256 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := crashKey(round, w, i)
				off, err := j.Append(context.Background(), payload(key))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				// One write per line, so a line is whole or absent.
				os.Stdout.WriteString(fmt.Sprintf("ack %d %s\n", off, key))
			}
		})
	}
	wg.Wait()
}

// TestAckedRecordsSurviveKill9 runs the test binary as an appending helper,
// kills it with SIGKILL in the middle of the stream, reopens the journal
// and checks that every acknowledged record is there with its content.
// Three rounds on the same directory also check that recovery leaves a
// journal the next process can keep appending to without reusing offsets.
func TestAckedRecordsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts helper processes")
	}
	dir := t.TempDir()
	acked := map[uint64]string{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())

		const killAfter = 3000
		killed := false
		n := 0
		br := bufio.NewReader(stdout)
		for {
			line, err := br.ReadString('\n')
			if errors.Is(err, io.EOF) {
				break // a partial line was not a whole ack
			}
			require.NoError(t, err)
			off, key, ok := parseAck(line)
			if !ok {
				continue
			}
			_, dup := acked[off]
			require.False(t, dup, "offset %d acknowledged twice", off)
			acked[off] = key
			if n++; n == killAfter {
				// Process.Kill is SIGKILL on Unix: no deferred code, no Close.
				require.NoError(t, cmd.Process.Kill())
				killed = true
			}
			// Keep reading: lines already in the pipe are acks too.
		}
		err = cmd.Wait()
		require.True(t, killed, "helper ended by itself: %v\n%s", err, stderr.String())

		start := time.Now()
		j, err := Open(Options{Dir: dir, SegmentBytes: 256 << 10})
		require.NoError(t, err)
		got := map[uint64][]byte{}
		for _, e := range readN(t, j, 1, int(j.Head())) {
			got[e.off] = e.data
		}
		reopened := time.Since(start)
		for off, key := range acked {
			data, ok := got[off]
			require.True(t, ok, "acknowledged offset %d lost", off)
			require.Equal(t, payload(key), data, "offset %d", off)
		}
		t.Logf("round %d: %d acknowledged in total, head %d after kill, reopen and read took %s",
			round, len(acked), j.Head(), reopened)
		require.NoError(t, j.Close())
	}
}

func parseAck(line string) (uint64, string, bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ack" {
		return 0, "", false
	}
	off, err := strconv.ParseUint(f[1], 10, 64)
	return off, f[2], err == nil
}
