package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// errOutage is what reads and writes return after a simulated outage cut
// the connection. Paho ignores "use of closed network connection" errors
// (it takes them for its own shutdown), so a plain Close would leave it
// believing it is still connected.
var errOutage = errors.New("simulated network outage")

// outageConn is a connection that a fault can cut as if the network had
// gone away.
type outageConn struct {
	net.Conn
	cut atomic.Bool
}

func (c *outageConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.cut.Load() {
		err = errOutage
	}
	return n, err
}

func (c *outageConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && c.cut.Load() {
		err = errOutage
	}
	return n, err
}

// cutOff drops the connection without an MQTT DISCONNECT.
func (c *outageConn) cutOff() {
	c.cut.Store(true)
	_ = c.Conn.Close()
}

// nullStore is a paho Store that keeps nothing. Paho resends the
// messages of its store after a reconnection; the meters' backlogs do
// that themselves (in batches), so paho's copy would only send every
// in-flight message twice and blur the count of what was sent.
type nullStore struct{}

func (nullStore) Open()                             {}
func (nullStore) Put(string, packets.ControlPacket) {}
func (nullStore) Get(string) packets.ControlPacket  { return nil }
func (nullStore) All() []string                     { return nil }
func (nullStore) Del(string)                        {}
func (nullStore) Close()                            {}
func (nullStore) Reset()                            {}

var _ mqtt.Store = nullStore{}

// dialing holds what every connection of the fleet shares: the paho
// options template, the TLS configuration and one dialer per source
// address.
type dialing struct {
	template *mqtt.ClientOptions
	host     string // host:port to dial
	tls      *tls.Config
	dialers  []*net.Dialer
	timeout  time.Duration
}

func newDialing(cfg Config) (*dialing, error) {
	u, err := url.Parse(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("broker url: %w", err)
	}
	d := &dialing{host: u.Host, timeout: cfg.ConnectTimeout}
	if u.Port() == "" {
		port := "1883"
		if isTLSScheme(u.Scheme) {
			port = "8883"
		}
		d.host = net.JoinHostPort(u.Hostname(), port)
	}
	if isTLSScheme(u.Scheme) {
		if d.tls, err = tlsConfig(cfg, u.Hostname()); err != nil {
			return nil, err
		}
	}
	if len(cfg.SourceAddrs) == 0 {
		d.dialers = []*net.Dialer{{Timeout: cfg.ConnectTimeout}}
	}
	for _, ip := range cfg.SourceAddrs {
		d.dialers = append(d.dialers, &net.Dialer{Timeout: cfg.ConnectTimeout, LocalAddr: &net.TCPAddr{IP: ip}})
	}

	// Paho options chosen for many light connections: no automatic
	// reconnection and no store (the meter does both, see nullStore), an
	// explicit protocol version (no second CONNECT in 3.1 after a
	// refusal), and no ordered delivery of incoming messages (meters
	// subscribe to nothing).
	o := mqtt.NewClientOptions()
	o.AddBroker(cfg.Broker)
	o.SetProtocolVersion(4)
	o.SetCleanSession(!cfg.Persistent)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	o.SetOrderMatters(false)
	o.SetStore(nullStore{})
	o.SetKeepAlive(cfg.KeepAlive)
	o.SetPingTimeout(min(10*time.Second, max(time.Second, cfg.KeepAlive/2)))
	o.SetConnectTimeout(cfg.ConnectTimeout)
	o.SetWriteTimeout(cfg.AckTimeout)
	o.SetMaxResumePubInFlight(1)
	d.template = o
	return d, nil
}

func tlsConfig(cfg Config, host string) (*tls.Config, error) {
	t := &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // a flag, for development brokers
		MinVersion:         tls.VersionTLS12,
		// Session resumption makes reconnecting 100,000 meters cheaper
		// for both ends.
		ClientSessionCache: tls.NewLRUClientSessionCache(4096),
	}
	if cfg.ServerName != "" {
		t.ServerName = cfg.ServerName
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// connection is one MQTT connection of one meter, with its own paho
// client: a new client per connection keeps no state from the last one
// (pending tokens, packet IDs) that could leak or complete late.
type connection struct {
	client mqtt.Client
	raw    *outageConn
	lost   chan struct{}
	once   sync.Once
	// abandoned counts publishes that were never acknowledged on this
	// connection; paho keeps their packet IDs until the connection ends.
	abandoned int
}

func (c *connection) markLost() { c.once.Do(func() { close(c.lost) }) }

// connectResult is how a connection attempt ended.
type connectResult int

const (
	connectOK connectResult = iota
	connectRefused
	connectFailed
)

// meterTLS returns the TLS configuration of a meter that presents its own
// client certificate. The meter gets its own session cache: TLS session
// resumption restores the certificate of the session's first handshake, so
// a cache shared across meters would let one meter resume as another.
func (d *dialing) meterTLS(cert tls.Certificate) *tls.Config {
	t := d.tls.Clone()
	t.Certificates = []tls.Certificate{cert}
	t.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	return t
}

// connect opens a connection for meter id with password through dialer,
// with the meter's own TLS configuration when it has one (else the
// fleet's).
func (d *dialing) connect(ctx context.Context, id, password string, dialer *net.Dialer, meterTLS *tls.Config) (*connection, connectResult, error) {
	tc := d.tls
	if meterTLS != nil {
		tc = meterTLS
	}
	c := &connection{lost: make(chan struct{})}
	o := *d.template
	o.ClientID = id
	o.Username = id
	o.Password = password
	o.OnConnectionLost = func(mqtt.Client, error) { c.markLost() }
	o.CustomOpenConnectionFn = func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, d.timeout)
		defer cancel()
		nc, err := dialer.DialContext(dctx, "tcp", d.host)
		if err != nil {
			return nil, err
		}
		if tc != nil {
			tconn := tls.Client(nc, tc)
			if err := tconn.HandshakeContext(dctx); err != nil {
				_ = nc.Close()
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			nc = tconn
		}
		c.raw = &outageConn{Conn: nc}
		return c.raw, nil
	}
	c.client = mqtt.NewClient(&o)
	tok := c.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// The attempt is bounded by the connect timeout; let it finish
		// and close whatever it opened.
		go func() {
			<-tok.Done()
			if tok.Error() == nil {
				c.client.Disconnect(0)
			}
		}()
		return nil, connectFailed, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		if ct, ok := tok.(*mqtt.ConnectToken); ok {
			switch ct.ReturnCode() {
			case packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised, packets.ErrRefusedIDRejected:
				return nil, connectRefused, err
			}
		}
		return nil, connectFailed, err
	}
	return c, connectOK, nil
}
