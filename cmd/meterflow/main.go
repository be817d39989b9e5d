// Command meterflow is the Meterflow server and its admin tools: `serve`
// runs the MQTT broker, the ingest pipeline and the HTTP API; the other
// subcommands administer the same PostgreSQL database.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/meterflow/meterflow/internal/httpapi"
)

// CLI is the whole command line. Every flag can also be set by the
// environment variable named in its help.
type CLI struct {
	Log LogConfig `embed:"" prefix:"log-" group:"Logging"`

	Serve   ServeCmd   `cmd:"" help:"Run the server: MQTT broker, ingest pipeline, HTTP API."`
	Migrate MigrateCmd `cmd:"" help:"Apply database migrations and exit."`
	Meters  MetersCmd  `cmd:"" help:"Provision, revoke and list meters; issue their client certificates."`
	CA      CACmd      `cmd:"" name:"ca" help:"Certificate authority for development."`
	Users   UsersCmd   `cmd:"" help:"Create users who sign in to the API."`
	Tokens  TokensCmd  `cmd:"" help:"Create, list and revoke API tokens for integrators."`

	Tariffs  TariffsCmd  `cmd:"" help:"Load tariffs."`
	BillRun  BillRunCmd  `cmd:"" name:"bill-run" help:"Bill every account whose cycle has ended."`
	Bills    BillsCmd    `cmd:"" help:"Show bills."`
	Accruals AccrualsCmd `cmd:"" help:"Keep the cost so far of running cycles current."`
	Seed     SeedCmd     `cmd:"" help:"Generate synthetic households with usage (development, benchmarks)."`
	Ledger   LedgerCmd   `cmd:"" help:"Check the payments ledger."`
	Phones   PhonesCmd   `cmd:"" help:"Record households' phone numbers."`
	SMS      SMSCmd      `cmd:"" name:"sms" help:"Read the development SMS inbox."`

	Version VersionCmd `cmd:"" help:"Print the version."`
}

// LogConfig configures the process's structured log.
type LogConfig struct {
	Level  slog.Level `default:"info" env:"MF_LOG_LEVEL" help:"Log level: debug, info, warn, error (${env})."`
	Format string     `default:"text" enum:"text,json" env:"MF_LOG_FORMAT" help:"Log format: text or json (${env})."`
}

// Logger builds the process logger.
func (c LogConfig) Logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run() error {
	fmt.Println("meterflow", version)
	return nil
}

func main() {
	var cli CLI
	kctx := kong.Parse(&cli,
		kong.Name("meterflow"),
		kong.Description("Meterflow takes smart meters from telemetry to paid bills."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"scopes": strings.Join(httpapi.Scopes, ", ")},
	)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := cli.Log.Logger()
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(logger)
	if err := kctx.Run(); err != nil {
		logger.Error("meterflow failed", "command", kctx.Command(), "err", err)
		os.Exit(1)
	}
}
