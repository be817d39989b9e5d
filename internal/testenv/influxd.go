package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Influxd is a private InfluxDB server that a test can stop and start, to
// prove what happens when the store goes away. It keeps its port and data
// across restarts.
type Influxd struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
}

// StartInfluxd starts a private influxd (the one the local stack built) on a
// free port; it is stopped when the test ends.
func StartInfluxd(t testing.TB) *Influxd {
	t.Helper()
	localStack(t) // makes sure the binary exists
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	rpc := l2.Addr().(*net.TCPAddr).Port
	l2.Close()
	d := &Influxd{t: t, dir: t.TempDir(), port: port}
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%[2]s/meta"
  logging-enabled = false
[data]
  dir = "%[2]s/data"
  wal-dir = "%[2]s/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
  flux-enabled = true
[logging]
  level = "error"
[continuous_queries]
  enabled = false
`, rpc, d.dir, port)
	if err := os.WriteFile(filepath.Join(d.dir, "influxdb.conf"), []byte(conf), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	d.Start()
	influxQuery(t, d.URL(), "CREATE DATABASE meterflow")
	t.Cleanup(d.Stop)
	return d
}

func influxdPath() string {
	gobin := os.Getenv("GOBIN")
	if gobin == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err == nil {
			gobin = filepath.Join(string(out[:len(out)-1]), "bin")
		}
	}
	return filepath.Join(gobin, "influxd")
}

// URL is the server's base URL.
func (d *Influxd) URL() string { return "http://127.0.0.1:" + strconv.Itoa(d.port) }

// Start starts the server and waits until it answers.
func (d *Influxd) Start() {
	d.t.Helper()
	if d.cmd != nil {
		return
	}
	d.cmd = exec.Command(influxdPath(), "-config", filepath.Join(d.dir, "influxdb.conf"))
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("testenv: start influxd: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(d.URL() + "/ping")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Fatalf("testenv: influxd did not answer on %s", d.URL())
}

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (d *Influxd) Stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}
