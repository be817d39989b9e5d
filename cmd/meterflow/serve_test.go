package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validServe() ServeCmd {
	return ServeCmd{
		HTTPAddr: "127.0.0.1:0",
		Postgres: PostgresFlags{URL: "postgres://u@127.0.0.1:5432/db", MaxConns: 4},
		Influx:   InfluxFlags{URL: "http://127.0.0.1:8086", Bucket: "meterflow/autogen"},
		MQTTAddr: "127.0.0.1:0", MaxPayload: 65536, JournalDir: "/tmp/j", JournalMaxBytes: 1 << 30,
		Workers: 2, BatchSize: 100, FlushInterval: 1, SnapshotEvery: 1, RollupEvery: 1,
		Payments: testPaymentFlags(), SlowFrom: 0.25, MaxHold: 200 * time.Millisecond,
	}
}

func TestServeConfigNamesEveryBadSetting(t *testing.T) {
	good := validServe()
	require.NoError(t, good.Validate())
	cases := []struct {
		name  string
		mod   func(*ServeCmd)
		names []string
	}{
		{"bad http address", func(c *ServeCmd) { c.HTTPAddr = "nonsense" }, []string{"http-addr"}},
		{"no postgres", func(c *ServeCmd) { c.Postgres.URL = "" }, []string{"postgres url"}},
		{"bad influx url", func(c *ServeCmd) { c.Influx.URL = "ftp://x" }, []string{"influx url"}},
		{"no listeners", func(c *ServeCmd) { c.MQTTAddr = "" }, []string{"mqtt-addr"}},
		{"tls without a certificate", func(c *ServeCmd) { c.MQTTTLSAddr = ":8883" }, []string{"mqtt-tls-addr"}},
		{"missing certificate file", func(c *ServeCmd) {
			c.MQTTTLSAddr, c.MQTTTLSCert, c.MQTTTLSKey = ":8883", "/nonexistent.pem", "/nonexistent.key"
		}, []string{"mqtt-tls-cert", "mqtt-tls-key"}},
		{"short auth key", func(c *ServeCmd) { c.Auth.Key = "abcd" }, []string{"auth-key"}},
		{"bad alert factor", func(c *ServeCmd) { c.Alerts.AbnormalFactor = "twice" }, []string{"alert-abnormal-factor"}},
		{"bad alarm thresholds", func(c *ServeCmd) { c.Alerts.PaymentFailRatio = 2; c.Alerts.UpcomingBillDays = 90 },
			[]string{"alert payment failure", "alert upcoming bill days"}},
		{"twilio without credentials", func(c *ServeCmd) { c.Payments.SMS = "twilio" }, []string{"twilio"}},
		{"stripe without a key", func(c *ServeCmd) { c.Payments.Gateway = "stripe" }, []string{"stripe"}},
		{"bad vee rules", func(c *ServeCmd) { c.VEERules = "/nonexistent/rules.yaml" }, []string{"vee-rules"}},
		{"bad phone region", func(c *ServeCmd) { c.Payments.PhoneRegion = "Atlantis" }, []string{"phone-region"}},
		{"several at once", func(c *ServeCmd) { c.Workers = 0; c.MaxPayload = 1; c.JournalMaxBytes = 1 },
			[]string{"ingest-workers", "max-payload-bytes", "journal-max-bytes"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validServe()
			c.mod(&cfg)
			err := cfg.Validate()
			require.Error(t, err)
			for _, n := range c.names {
				assert.Contains(t, err.Error(), n)
			}
		})
	}
}

func TestServeHelpDocumentsSettings(t *testing.T) {
	out, err := exec.Command("go", "run", ".", "serve", "--help").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, want := range []string{"--postgres-url", "MF_POSTGRES_URL", "--influx-bucket", "--mqtt-tls-addr", "--journal-max-bytes", "MF_HTTP_ADDR", "MF_ALERT_EVALUATE_INTERVAL", "MF_ALARM_OFFLINE_AFTER"} {
		assert.Contains(t, string(out), want)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", "run", ".", "serve", "--ingest-workers", "0", "--max-payload-bytes", "1")
	cmd.Stderr = &stderr
	require.Error(t, cmd.Run())
	assert.True(t, strings.Contains(stderr.String(), "ingest-workers") && strings.Contains(stderr.String(), "max-payload-bytes"), stderr.String())
}
