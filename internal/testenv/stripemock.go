package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StripeMockModule is what StartStripeMock installs when the binary is
// missing. stripe-mock serves Stripe's API from its OpenAPI description: it
// checks the shape of every request but keeps no state (a repeated
// idempotency key returns a new object) and answers with fixtures.
const StripeMockModule = "github.com/stripe/stripe-mock@latest"

// StripeMock is a private stripe-mock server.
type StripeMock struct {
	// URL is its plain-http address; HTTPSURL its https one (self-signed).
	URL      string
	HTTPSURL string
	cmd      *exec.Cmd
	done     chan struct{}
	out      *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	stripeMockOnce sync.Once
	stripeMockBin  string
	stripeMockErr  error
)

// gobin is where go install puts binaries.
func gobin() (string, error) {
	if b := os.Getenv("GOBIN"); b != "" {
		return b, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOPATH: %w", err)
	}
	gopath := strings.TrimSpace(string(out))
	if i := strings.IndexByte(gopath, os.PathListSeparator); i >= 0 {
		gopath = gopath[:i]
	}
	return filepath.Join(gopath, "bin"), nil
}

// stripeMockPath returns the stripe-mock binary, installing it with go
// install the first time. A file lock keeps parallel test binaries from
// installing it at once; the others wait and find it installed.
func stripeMockPath() (string, error) {
	stripeMockOnce.Do(func() {
		dir, err := gobin()
		if err != nil {
			stripeMockErr = err
			return
		}
		bin := filepath.Join(dir, "stripe-mock")
		stripeMockBin = bin
		if _, err := os.Stat(bin); err == nil {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			stripeMockErr = err
			return
		}
		lock, err := os.OpenFile(filepath.Join(dir, ".stripe-mock.install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			stripeMockErr = fmt.Errorf("lock for installing stripe-mock: %w", err)
			return
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			stripeMockErr = fmt.Errorf("lock for installing stripe-mock: %w", err)
			return
		}
		defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
		if _, err := os.Stat(bin); err == nil {
			return // another process installed it while this one waited
		}
		cmd := exec.Command("go", "install", StripeMockModule)
		// Outside the module, so @latest is resolved on its own.
		cmd.Dir = os.TempDir()
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			stripeMockErr = fmt.Errorf("go install %s failed (%v); install it by hand with that command, "+
				"which needs the Go module proxy:\n%s", StripeMockModule, err, out)
		}
	})
	return stripeMockBin, stripeMockErr
}

// freePort returns a loopback port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartStripeMock starts a private stripe-mock on free loopback ports, waits
// until it answers, and stops it when the test ends. The binary is installed
// into GOBIN (or GOPATH/bin) the first time; the test fails, never skips,
// when that is impossible.
func StartStripeMock(t testing.TB) *StripeMock {
	t.Helper()
	bin, err := stripeMockPath()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var last string
	for try := 0; try < 3; try++ { // a port taken between choosing and binding: choose again
		httpPort, httpsPort := freePort(t), freePort(t)
		m := &StripeMock{
			URL:      "http://127.0.0.1:" + strconv.Itoa(httpPort),
			HTTPSURL: "https://127.0.0.1:" + strconv.Itoa(httpsPort),
			done:     make(chan struct{}),
			out:      &syncBuffer{},
		}
		m.cmd = exec.Command(bin, "-http-addr", "127.0.0.1:"+strconv.Itoa(httpPort), "-https-addr", "127.0.0.1:"+strconv.Itoa(httpsPort))
		m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
		if err := m.cmd.Start(); err != nil {
			t.Fatalf("testenv: start stripe-mock: %v", err)
		}
		go func() { _ = m.cmd.Wait(); close(m.done) }()
		if m.wait(30 * time.Second) {
			t.Cleanup(m.stop)
			return m
		}
		m.stop()
		last = m.out.String()
	}
	t.Fatalf("testenv: stripe-mock did not answer; its output:\n%s", last)
	return nil
}

// wait polls until the server answers, it exits, or the time is up.
func (m *StripeMock) wait(d time.Duration) bool {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return false
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, m.URL+"/v1/balance", nil)
		req.SetBasicAuth("sk_test_123", "")
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// stop ends the server (SIGTERM, then SIGKILL) and waits for it.
func (m *StripeMock) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}
