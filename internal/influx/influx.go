package influx

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
)

// Config addresses one bucket.
type Config struct {
	URL    string
	Org    string
	Bucket string
	Token  string
	// Timeout bounds one HTTP request.
	Timeout time.Duration
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("influx url: must be set"))
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("influx url: %q is not an http(s) URL", c.URL))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("influx bucket: must be set (InfluxDB 1.8: database/retention-policy)"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("influx timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// Client is a connection to one InfluxDB bucket.
type Client struct {
	cfg    Config
	client influxdb2.Client
	write  api.WriteAPIBlocking
	query  api.QueryAPI
}

// Open creates a client; it does not contact the server (see Ping).
func Open(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	opts := influxdb2.DefaultOptions().
		SetPrecision(time.Millisecond).
		SetHTTPRequestTimeout(uint(timeout / time.Second)).
		SetUseGZip(false)
	c := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	return &Client{
		cfg:    cfg,
		client: c,
		write:  c.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		query:  c.QueryAPI(cfg.Org),
	}, nil
}

// Config returns the client's configuration.
func (c *Client) Config() Config { return c.cfg }

// Ping checks that InfluxDB answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.client.Ping(ctx); err != nil {
		return fmt.Errorf("influxdb: %w", err)
	}
	return nil
}

// WriteLines writes line-protocol text (lines joined by '\n') with
// millisecond timestamps.
func (c *Client) WriteLines(ctx context.Context, lines string) error {
	if lines == "" {
		return nil
	}
	return c.write.WriteRecord(ctx, lines)
}

// Query runs a Flux query and returns the raw result reader.
func (c *Client) Query(ctx context.Context, flux string) (*api.QueryTableResult, error) {
	return c.query.Query(ctx, flux)
}

// Close releases the client's resources.
func (c *Client) Close() { c.client.Close() }
