// Command verify checks the outcome of an end-to-end benchmark run
// (deploy/local/bench-e2e.sh, `make bench-e2e`).
//
//	verify check --acked-log acked.csv --influx-url URL --influx-bucket DB/RP --postgres-url URL
//	verify probe --broker tcp://127.0.0.1:1883 --credentials probe.csv --influx-url URL --influx-bucket DB/RP --duration 60s
//
// check reads the acknowledged log of firmware-sim (meter_id,seq,time per
// acknowledged message) and compares, meter by meter, the set of seq values
// with the seq field of the `reading` points in InfluxDB: a message that was
// acknowledged but is not there is lost. It also checks that PostgreSQL's
// interval_usage holds the interval that starts at each acknowledged
// reading's time. It prints a JSON result and exits with status 1 when
// anything is missing.
//
// probe measures publish→queryable latency: it publishes a reading for one
// dedicated meter at a fixed interval (QoS 1) while the load runs, polls
// InfluxDB for the probe meter's points, and reports the percentiles of the
// time from the publish to the end of the first query that returned the
// point.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "verify:", err)
		os.Exit(1)
	}
}

// errFailed says the run was measured but did not pass: the JSON result
// has been printed already.
var errFailed = errors.New("check failed")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "Usage: verify check|probe [flags]   (verify check --help, verify probe --help)")
	}
	if len(args) == 0 {
		usage()
		return flag.ErrHelp
	}
	switch args[0] {
	case "check":
		return runCheck(ctx, args[1:], stdout, stderr)
	case "probe":
		return runProbe(ctx, args[1:], stdout, stderr)
	default:
		usage()
		return fmt.Errorf("unknown command %q", args[0])
	}
}
