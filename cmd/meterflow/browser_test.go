package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/alert"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/seed"
	"github.com/meterflow/meterflow/internal/tariff"
	"github.com/meterflow/meterflow/internal/testenv"
)

// The browser tests drive the portal and the dashboard in headless Chromium
// (installed by deploy/local/chromium.sh, which `make test` runs first)
// against a real server, real stores and a meter publishing over MQTT.

const (
	householdPhone = "+447400123461"
	operatorPhone  = "+447400123462"
	browserPass    = "a long household password"
)

// chromiumPath finds the browser: MF_CHROMIUM, else Debian's chromium.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("MF_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("chromium")
	require.NoError(t, err, "no Chromium: run deploy/local/chromium.sh (make test does) or set MF_CHROMIUM")
	return p
}

// browser starts headless Chromium for the test and returns a context of
// its first tab. JavaScript exceptions of any page fail the test.
func browser(t *testing.T) (context.Context, *jsErrors) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	errs := &jsErrors{}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(errs.listen))
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start Chromium")
	return ctx, errs
}

// jsErrors collects uncaught exceptions and console errors of a tab.
type jsErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (j *jsErrors) listen(ev any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		j.msgs = append(j.msgs, msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			j.msgs = append(j.msgs, "console.error: "+strings.Join(parts, " "))
		}
	}
}

func (j *jsErrors) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.msgs...)
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if !assert.NoError(t, err, "screenshot %s", name) {
		return
	}
	dir := filepath.Join(testenv.RepoRoot(t), "test-artifacts")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644))
}

var smsCode = regexp.MustCompile(`\b([0-9]{6})\b`)

// codeAfter waits for a message to phone newer than id whose text contains
// want, and returns its code and id.
func codeAfter(t *testing.T, inbox *postgres.DevSMS, phone string, after int64, want string) (string, int64) {
	t.Helper()
	var code string
	var id int64
	require.Eventually(t, func() bool {
		msgs, err := inbox.Inbox(context.Background(), phone, 5)
		require.NoError(t, err)
		for _, m := range msgs {
			if m.ID > after && strings.Contains(m.Body, want) {
				code, id = smsCode.FindString(m.Body), m.ID
				return code != ""
			}
		}
		return false
	}, 15*time.Second, 50*time.Millisecond, "an SMS to %s containing %q", phone, want)
	return code, id
}

func lastSMS(t *testing.T, inbox *postgres.DevSMS, phone string) int64 {
	msgs, err := inbox.Inbox(context.Background(), phone, 1)
	require.NoError(t, err)
	if len(msgs) == 0 {
		return 0
	}
	return msgs[0].ID
}

// signIn signs in with the keyboard only: the fields are typed into and
// the forms sent with Enter.
func signIn(t *testing.T, ctx context.Context, inbox *postgres.DevSMS, phone string) {
	t.Helper()
	before := lastSMS(t, inbox, phone)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.ID("signin-phone")),
		chromedp.SendKeys(chromedp.ID("signin-phone"), phone),
		chromedp.SendKeys(chromedp.ID("signin-password"), browserPass+kb.Enter),
		chromedp.WaitVisible(chromedp.ID("signin-code")),
	))
	code, _ := codeAfter(t, inbox, phone, before, "")
	require.NoError(t, chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("signin-code"), code+kb.Enter)))
}

// a11yAudit checks the page for inputs without a label, text below 4.5:1
// contrast against its background, and charts without a text alternative.
// It returns the problems it found.
const a11yAudit = `(() => {
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const labelled = (el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    if (!labelled) problems.push('no label: ' + (el.id || el.name || el.outerHTML.slice(0, 60)));
  }
  const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0)) return c;
    }
    return [255, 255, 255];
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!el || seen.has(el) || !walker.currentNode.textContent.trim()) continue;
    seen.add(el);
    if (el.closest('svg, noscript, .sr-only, [hidden], details:not([open])')) continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const fg = rgb(getComputedStyle(el).color);
    const [a, b] = [lum(fg), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ': ' + el.tagName + ' ' + el.textContent.trim().slice(0, 40));
  }
  for (const svg of document.querySelectorAll('svg.chart')) {
    const ok = svg.getAttribute('role') === 'img' && svg.querySelector('title') && svg.querySelector('desc') &&
      svg.closest('figure') && svg.closest('figure').querySelector('table');
    if (!ok) problems.push('chart without a text alternative');
  }
  return problems;
})()`

// onFailure saves a screenshot and logs the page's text when t has failed;
// ctx is the tab's context without the subtest's deadline.
func onFailure(t *testing.T, ctx context.Context, name string) {
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	screenshot(t, ctx, name+"-failed")
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err == nil {
		t.Logf("the page when %s failed:\n%s", name, text)
	}
}

func audit(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](a11yAudit))
	require.NoError(t, err)
	assert.Empty(t, problems, "accessibility problems on %s", page)
}

type browserEnv struct {
	m         *Main
	db        *postgres.DB
	inbox     *postgres.DevSMS
	household int64
	account   int64
	meter     *simMeter
	base      string
}

// newBrowserEnv seeds a household (with `meterflow seed`'s generator),
// gives it a meter that publishes over MQTT, a verified phone and a card,
// starts the server, and creates a household and an operator user.
func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	ctx := context.Background()
	inf := testenv.InfluxDB(t)
	cfg := testConfig(t, inf.URL, inf.Bucket)
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.Postgres.URL})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	e := &browserEnv{db: db, inbox: &postgres.DevSMS{DB: db}}

	// The seeded usage ends the day before yesterday, before the readings
	// the test's meter publishes on the same service point: two meters
	// measuring the same hours would overlap in the bill.
	today := tariff.DateOf(time.Now().UTC())
	res, err := seed.Run(ctx, db, seed.Options{Accounts: 1, From: today.AddDays(-4), To: today.AddDays(-2), Interval: time.Hour,
		Utilities: []meter.Utility{meter.Electricity}, Workers: 1})
	require.NoError(t, err)
	e.account = res.FirstAccount
	var sp int64
	require.NoError(t, db.Pool.QueryRow(ctx, `select a.household_id, sp.id from accounts a join premises p on p.account_id = a.id
		join service_points sp on sp.premise_id = p.id where a.id = $1 and sp.utility = 'electricity'`, e.account).Scan(&e.household, &sp))
	tokens := provision(t, cfg.Postgres.URL, device.Request{ID: "E-PORTAL", Utility: meter.Electricity, ServicePointID: &sp})

	store := &postgres.Payments{DB: db}
	_, err = store.AddPhone(ctx, e.household, householdPhone, time.Now())
	require.NoError(t, err)
	tok, err := sandbox.Tokenize(sandbox.CardSuccess)
	require.NoError(t, err)
	_, err = store.AddPaymentMethod(ctx, postgres.PaymentMethod{HouseholdID: e.household, Gateway: "sandbox", Token: tok, Brand: "Visa", Last4: "4242"})
	require.NoError(t, err)

	e.m = startMain(t, cfg)
	e.base = "http://" + e.m.HTTPAddr()
	_, err = e.m.Auth.CreateUser(ctx, auth.NewUser{Phone: householdPhone, Password: browserPass, Role: auth.RoleHousehold, HouseholdID: e.household})
	require.NoError(t, err)
	_, err = e.m.Auth.CreateUser(ctx, auth.NewUser{Phone: operatorPhone, Password: browserPass, Role: auth.RoleOperator})
	require.NoError(t, err)
	e.meter = dialMeter(t, e.m.Broker.TCPAddr().String(), "E-PORTAL", tokens["E-PORTAL"])
	return e
}

// issueBill issues a bill as billing does: the bill and its bill.issued
// event in one transaction, for the auto-pay consumer to pick up.
func (e *browserEnv) issueBill(t *testing.T, total string) int64 {
	t.Helper()
	ctx := context.Background()
	tx, err := e.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var bill int64
	require.NoError(t, tx.QueryRow(ctx, `insert into bills (account_id, household_id, period_start, period_end,
		period_start_at, period_end_at, time_zone, currency, subtotal, tax, total, issued_at, due_date)
		values ($1, $2, '2026-10-01', '2026-11-01', '2026-10-01T00:00:00+01', '2026-11-01T00:00:00Z', 'Europe/London', 'GBP',
		$3::numeric - 2, 2, $3::numeric, now(), '2026-11-15') returning id`, e.account, e.household, total).Scan(&bill))
	_, err = tx.Exec(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at) values ($1, 'bill.issued', $2, $3, now())`,
		fmt.Sprintf("bill.issued:%d", bill), e.account,
		fmt.Sprintf(`{"bill_id": %d, "account_id": %d, "period_start": "2026-10-01", "period_end": "2026-11-01", "currency": "GBP", "total": %q,
			"due_date": "2026-11-15"}`, bill, e.account, total))
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	return bill
}

func TestBrowserPortalAndDashboard(t *testing.T) {
	e := newBrowserEnv(t)
	ctx := context.Background()

	// Six hours of readings, all inside the portal's 48-hour chart, and
	// room for the 20 the operator test publishes before the present.
	e.meter.startAgo(60)
	var firstRead meter.Value
	for i := range 24 {
		msg := e.meter.message()
		if i == 0 {
			firstRead = msg.Readings[0].Value
		}
		require.NoError(t, e.meter.publish(msg))
	}
	want := float64(e.meter.reg-firstRead) / 1000 // kWh between the first and the last read
	require.Eventually(t, func() bool { _, n := pgUsage(t, e.m.Config.Postgres.URL, "E-PORTAL"); return n == 23 }, 30*time.Second, 100*time.Millisecond)
	require.NoError(t, e.m.Rollups.RunOnce(ctx))
	// The cost so far of the running cycle, as the accrual loop computes it
	// from the seeded household's tariffs.
	for name, data := range seed.Tariffs() {
		_, _, err := e.m.Billing.LoadTariff(ctx, data)
		require.NoError(t, err, name)
	}
	sum, err := e.m.Billing.UpdateAccruals(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, sum.Accruals, "the electricity accrual of the household: %+v", sum)

	bctx, jsErrs := browser(t)

	t.Run("household sees its usage chart", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(bctx, 40*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(tctx, chromedp.Navigate(e.base+"/")))
		audit(t, tctx, "sign-in")
		// Keyboard: the form starts focused, Tab moves on, and focus shows.
		require.NoError(t, chromedp.Do(tctx, chromedp.WaitVisible(chromedp.ID("signin-phone"))))
		focused := func() []string {
			f, err := chromedp.Run(tctx, chromedp.Evaluate[[]string](`[document.activeElement.id, getComputedStyle(document.activeElement).outlineStyle]`))
			require.NoError(t, err)
			return f
		}
		assert.Equal(t, "signin-phone", focused()[0], "the phone field has focus")
		require.NoError(t, chromedp.Do(tctx, chromedp.KeyEvent(kb.Tab)))
		assert.Equal(t, []string{"signin-password", "solid"}, focused(), "Tab moves on, and the focus is visible")
		require.NoError(t, chromedp.Do(tctx, chromedp.KeyEvent(kb.Tab)))
		assert.Equal(t, []string{"signin-submit", "solid"}, focused())

		signIn(t, tctx, e.inbox, householdPhone)
		require.NoError(t, chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS("figure.chart svg rect.bar"))))
		values, err := chromedp.Run(tctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('figure.chart svg rect.bar')].map(r => r.dataset.value)`))
		require.NoError(t, err)
		require.NotEmpty(t, values)
		total := 0.0
		for _, v := range values {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			total += f
		}
		assert.InDelta(t, want, total, 1e-6, "the hourly bars add up to what the meter measured")
		assert.GreaterOrEqual(t, len(values), 6, "six hours of readings, one bar an hour")
		rows, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll('figure.chart table tbody tr').length`))
		require.NoError(t, err)
		assert.Equal(t, len(values), rows, "the chart's table has a row per bar")
		label, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('figure.chart svg').getAttribute('aria-labelledby')`))
		require.NoError(t, err)
		assert.NotEmpty(t, label)
		audit(t, tctx, "home")
		screenshot(t, tctx, "portal-home")

		// Every page renders without a script error and passes the audit.
		for _, page := range []string{"bills", "payments", "autopay", "methods", "phones", "alerts", "exports", "messages", ""} {
			require.NoError(t, chromedp.Do(tctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = '#/%s'`, page))))
			_, err := chromedp.Run(tctx, chromedp.Poll[bool](`!!document.querySelector('main h1') && !document.querySelector('main [aria-busy]')`,
				chromedp.WithPollingTimeout(10*time.Second)))
			require.NoError(t, err, "page #/%s finishes loading", page)
			audit(t, tctx, "#/"+page)
		}
	})

	t.Run("household sets budgets and sees them against the forecast", func(t *testing.T) {
		defer onFailure(t, bctx, "sets")
		tctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = '#/'`),
			chromedp.WaitVisible(chromedp.CSS(`#cost-cards article[data-scope="electricity"] .projected`)),
			chromedp.WaitVisible(chromedp.CSS("#budget-setup summary")),
		))
		var accrued, projected string
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select amount::text, projected::text from accruals where account_id = $1 and utility = 'electricity'`,
			e.account).Scan(&accrued, &projected))
		card, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`#cost-cards article[data-scope="electricity"]`)))
		require.NoError(t, err)
		assert.Contains(t, card, accrued+" GBP", "the cost so far, as the API sent it")
		assert.Contains(t, card, projected+" GBP", "the forecast")
		assert.Contains(t, card, "No budget set.")

		// Keyboard only: open the form with Enter, type, send with Enter.
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Focus(chromedp.CSS("#budget-setup summary")),
			chromedp.KeyEvent(kb.Enter),
			chromedp.WaitVisible(chromedp.ID("budget-account")),
			chromedp.SendKeys(chromedp.ID("budget-electricity"), "90.50"),
			chromedp.SendKeys(chromedp.ID("budget-account"), "150"+kb.Enter),
			chromedp.WaitVisible(chromedp.CSS("#budget-status .notice.ok")),
		))
		rows, err := e.db.Pool.Query(ctx, `select scope, amount::text, percents::text from budgets where account_id = $1 order by scope`, e.account)
		require.NoError(t, err)
		var got []string
		for rows.Next() {
			var scope, amount, percents string
			require.NoError(t, rows.Scan(&scope, &amount, &percents))
			got = append(got, scope+" "+amount+" "+percents)
		}
		require.NoError(t, rows.Err())
		assert.Equal(t, []string{"account 150 {50,80,100}", "electricity 90.50 {50,80,100}"}, got, "the budgets in PostgreSQL")

		// The cards now show each budget next to its forecast.
		budgets, err := chromedp.Run(tctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#cost-cards article')].map(a => a.dataset.scope + ' ' + (a.querySelector('strong.budget') || {}).textContent)`))
		require.NoError(t, err)
		assert.Equal(t, []string{"electricity 90.50 GBP", "account 150.00 GBP"}, budgets, "as the API sends them: with the currency's minor units")
		meters, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll('#cost-cards meter[aria-label]').length`))
		require.NoError(t, err)
		assert.Equal(t, 2, meters, "a labelled gauge per budget")
		audit(t, tctx, "home with budgets")
		screenshot(t, tctx, "portal-budgets")
	})

	t.Run("household turns on auto-pay and confirms the payment it prepares", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(bctx, 40*time.Second)
		defer cancel()
		before := lastSMS(t, e.inbox, householdPhone)
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = '#/autopay'`),
			chromedp.WaitVisible(chromedp.CSS("#autopay-setup summary")),
			chromedp.Click(chromedp.CSS("#autopay-setup summary")),
			chromedp.WaitVisible(chromedp.ID("autopay-max")),
			chromedp.SendKeys(chromedp.ID("autopay-max"), "500"+kb.Enter),
			chromedp.WaitVisible(chromedp.ID("autopay-code")),
		))
		audit(t, tctx, "auto-pay")
		code, _ := codeAfter(t, e.inbox, householdPhone, before, "turn on auto-pay")
		require.NoError(t, chromedp.Do(tctx,
			chromedp.SendKeys(chromedp.ID("autopay-code"), code+kb.Enter),
			chromedp.WaitVisible(chromedp.ID("autopay-on")),
		))
		var enabled int
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select count(*) from autopay_rules where account_id = $1 and enabled and trigger = 'bill_issued'
			and max_amount = 500`, e.account).Scan(&enabled))
		require.Equal(t, 1, enabled, "the rule is in effect")

		// A bill is issued; the auto-pay consumer prepares its payment and
		// sends the code.
		bill := e.issueBill(t, "42.10")
		store := &postgres.Payments{DB: e.db}
		var pay payment.Payment
		require.Eventually(t, func() bool {
			ps, err := store.ListPayments(ctx, e.household, "otp_sent", 0, 10)
			require.NoError(t, err)
			for _, p := range ps {
				if p.BillID == bill {
					pay = p
					return true
				}
			}
			return false
		}, 15*time.Second, 50*time.Millisecond, "auto-pay prepares the payment")
		code, _ = codeAfter(t, e.inbox, householdPhone, 0, "to pay 42.10 GBP")

		link := fmt.Sprintf(`a[href="#/payments/%d"]`, pay.ID)
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = '#/payments'`),
			chromedp.WaitVisible(chromedp.CSS(link)),
			chromedp.Click(chromedp.CSS(link)),
			chromedp.WaitVisible(chromedp.ID("confirm-code")),
			chromedp.SendKeys(chromedp.ID("confirm-code"), code+kb.Enter),
			chromedp.WaitVisible(chromedp.ID("confirm-result")),
		))
		shown, err := chromedp.Run(tctx, chromedp.AttributeValue(chromedp.ID("confirm-result"), "data-state"))
		require.NoError(t, err)
		assert.Equal(t, "succeeded", shown.Value)
		var state, amount, billStatus string
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select p.state, p.amount::text, b.status from payments p join bills b on b.id = p.bill_id
			where p.id = $1`, pay.ID).Scan(&state, &amount, &billStatus))
		assert.Equal(t, "succeeded", state)
		assert.Equal(t, "42.10", amount)
		assert.Equal(t, "paid", billStatus)
		text, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("confirm-result")))
		require.NoError(t, err)
		assert.Contains(t, text, "42.10 GBP", "the amount as the API sent it")
		audit(t, tctx, "payment")
		screenshot(t, tctx, "portal-payment")
	})

	t.Run("household pays a bill from its page", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		var bill int64
		require.NoError(t, e.db.Pool.QueryRow(ctx, `insert into bills (account_id, household_id, period_start, period_end,
			period_start_at, period_end_at, time_zone, currency, subtotal, tax, total, issued_at, due_date)
			values ($1, $2, '2026-09-01', '2026-10-01', '2026-09-01T00:00:00+01', '2026-10-01T00:00:00+01', 'Europe/London', 'GBP',
			17.00, 0.85, 17.85, now(), '2026-10-15') returning id`, e.account, e.household).Scan(&bill))
		before := lastSMS(t, e.inbox, householdPhone)
		link := fmt.Sprintf(`a[href="#/bills/%d"]`, bill)
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = '#/bills'`),
			chromedp.WaitVisible(chromedp.CSS(link)),
			chromedp.Click(chromedp.CSS(link)),
			chromedp.WaitVisible(chromedp.ID("pay-method")),
		))
		// The printable view is the API's, reachable from the page.
		status, err := chromedp.Run(tctx, chromedp.Evaluate[int](`fetch(document.querySelector('a[href$="/print"]').href).then(r => r.status)`, chromedp.EvalAwaitPromise))
		require.NoError(t, err)
		assert.Equal(t, 200, status)
		audit(t, tctx, "bill")
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Focus(chromedp.ID("pay-bill")),
			chromedp.KeyEvent(kb.Enter),
			chromedp.WaitVisible(chromedp.ID("confirm-code")),
		))
		code, _ := codeAfter(t, e.inbox, householdPhone, before, "to pay 17.85 GBP")
		require.NoError(t, chromedp.Do(tctx,
			chromedp.SendKeys(chromedp.ID("confirm-code"), code+kb.Enter),
			chromedp.WaitVisible(chromedp.ID("confirm-result")),
		))
		var billStatus string
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select status from bills where id = $1`, bill).Scan(&billStatus))
		assert.Equal(t, "paid", billStatus)
	})

	t.Run("household sees an alert arrive live and marks it read", func(t *testing.T) {
		defer onFailure(t, bctx, "sees")
		tctx, cancel := context.WithTimeout(bctx, 40*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = '#/alerts'`),
			chromedp.WaitVisible(chromedp.ID("prefs-form")),
			chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`),
		))
		// The stream is open before the alert happens.
		_, err := chromedp.Run(tctx, chromedp.Poll[bool](`document.getElementById('alert-stream-status').textContent.startsWith('New alerts appear here')`,
			chromedp.WithPollingTimeout(15*time.Second)))
		require.NoError(t, err, "the live alert stream connects")
		// Wait for the alerts of the payments above, so that the one caused
		// below is the only one still to come.
		var before int64
		require.Eventually(t, func() bool {
			var pending int
			require.NoError(t, e.db.Pool.QueryRow(ctx, `select count(*) from outbox_deliveries where consumer = 'alerts' and done_at is null and not dead`).Scan(&pending))
			require.NoError(t, e.db.Pool.QueryRow(ctx, `select coalesce(max(id), 0) from alerts`).Scan(&before))
			return pending == 0
		}, 15*time.Second, 100*time.Millisecond, "the alerts consumer is idle")
		_, err = chromedp.Run(tctx, chromedp.Poll[bool](fmt.Sprintf(`[...document.querySelectorAll('#alert-list tr[data-alert-id]')].every(r => Number(r.dataset.alertId) <= %d)`, before),
			chromedp.WithPollingTimeout(5*time.Second)))
		require.NoError(t, err)
		unread0, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.getElementById('alert-badge').dataset.count`))
		require.NoError(t, err)

		// Billing's accrual run would send this event when the cost of the
		// cycle crosses 80 % of the account's budget.
		_, err = e.db.Pool.Exec(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at) values ($1, 'budget.crossed', $2, $3, now())`,
			fmt.Sprintf("budget.crossed:%d:account:80:2026-05-01", e.account), e.account,
			`{"scope": "account", "percent": 80, "budget": "150", "accrued": "120.40", "currency": "GBP", "cycle_start": "2026-05-01", "cycle_end": "2026-06-01"}`)
		require.NoError(t, err)
		const row = `#alert-list tr[data-alert-id]`
		id, err := chromedp.Run(tctx, chromedp.Poll[string](fmt.Sprintf(`(() => { const r = [...document.querySelectorAll('%s')].find(r => Number(r.dataset.alertId) > %d); return r ? r.dataset.alertId : ''; })()`, row, before),
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err, "the alert appears without a reload")
		sel := fmt.Sprintf(`#alert-list tr[data-alert-id="%s"]`, id)
		text, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err)
		assert.Contains(t, text, "80% of your monthly budget")
		assert.Contains(t, text, "GBP 120.40")
		same, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`window.sameDocument === true`))
		require.NoError(t, err)
		assert.True(t, same, "the page was not reloaded")
		var kind string
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select kind from alerts where id = $1 and account_id = $2`, id, e.account).Scan(&kind))
		assert.Equal(t, "budget", kind)
		unread1, err := chromedp.Run(tctx, chromedp.Poll[string](fmt.Sprintf(`(() => { const n = document.getElementById('alert-badge').dataset.count; return n !== '%s' && n; })()`, unread0),
			chromedp.WithPollingTimeout(5*time.Second)))
		require.NoError(t, err, "the header's count follows")
		n0, _ := strconv.Atoi(unread0)
		n1, _ := strconv.Atoi(unread1)
		assert.Equal(t, n0+1, n1)
		screenshot(t, tctx, "portal-alerts")

		// Mark it read with the keyboard.
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Focus(chromedp.CSS(sel+" button.mark-read")),
			chromedp.KeyEvent(kb.Enter),
			chromedp.WaitVisible(chromedp.CSS(sel+`[data-read="yes"]`)),
		))
		var read bool
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select read_at is not null from alerts where id = $1`, id).Scan(&read))
		assert.True(t, read, "read in PostgreSQL")
		badge, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.getElementById('alert-badge').dataset.count`))
		require.NoError(t, err)
		assert.Equal(t, unread0, badge)

		// Preferences: every kind of alert can be chosen; no in-app alert
		// for a silent meter, texts held from 21:30 to 06:45.
		kinds, err := chromedp.Run(tctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#prefs-form input[id$="-inapp"]')].map(i => i.id.slice(5, -6))`))
		require.NoError(t, err)
		var want []string
		for _, k := range alert.Kinds {
			want = append(want, string(k))
		}
		assert.ElementsMatch(t, want, kinds, "the preferences list every kind of alert")
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Click(chromedp.ID("pref-meter_silent-inapp")),
			chromedp.Click(chromedp.ID("quiet-on")),
			chromedp.SetValue(chromedp.ID("quiet-start"), "21:30"),
			chromedp.SetValue(chromedp.ID("quiet-end"), "06:45"),
			chromedp.Click(chromedp.ID("prefs-save")),
			chromedp.WaitVisible(chromedp.CSS("#prefs-status .notice.ok")),
		))
		var silent, billIssued, quiet string
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select channels->>'meter_silent', channels->>'bill_issued', quiet_start::text || '-' || quiet_end::text
			from alert_preferences where household_id = $1`, e.household).Scan(&silent, &billIssued, &quiet))
		assert.Equal(t, "[]", silent)
		assert.Equal(t, `["inapp", "sms"]`, billIssued, "the others as they were")
		assert.Equal(t, "21:30:00-06:45:00", quiet)
		audit(t, tctx, "alerts")
	})

	t.Run("household adds a card by token and finds its downloads", func(t *testing.T) {
		defer onFailure(t, bctx, "adds")
		tctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		tok, err := sandbox.Tokenize(sandbox.CardDeclined)
		require.NoError(t, err)
		require.NoError(t, chromedp.Do(tctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = '#/methods'`),
			chromedp.WaitVisible(chromedp.ID("method-token")),
			chromedp.SendKeys(chromedp.ID("method-token"), tok+kb.Enter),
			chromedp.WaitVisible(chromedp.ID("method-added")),
		))
		added, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("method-added")))
		require.NoError(t, err)
		assert.Contains(t, added, "ending 0002")
		var id int64
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select id from payment_methods where household_id = $1 and last4 = '0002' and token = $2`, e.household, tok).Scan(&id))
		require.NoError(t, chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-method-id="%d"]`, id)))))
		audit(t, tctx, "payment methods")

		require.NoError(t, chromedp.Do(tctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = '#/exports'`),
			chromedp.WaitVisible(chromedp.ID("export-csv")),
		))
		type download struct {
			Status int    `json:"status"`
			Type   string `json:"type"`
			Body   string `json:"body"`
		}
		fetch := func(id string) download {
			d, err := chromedp.Run(tctx, chromedp.Evaluate[download](fmt.Sprintf(`fetch(document.getElementById(%q).href).then(async r => ({status: r.status, type: r.headers.get('Content-Type'), body: await r.text()}))`, id),
				chromedp.EvalAwaitPromise))
			require.NoError(t, err)
			return d
		}
		csv := fetch("export-csv")
		assert.Equal(t, 200, csv.Status, csv.Body)
		assert.True(t, strings.HasPrefix(csv.Body, "time,meter,utility,channel,quantity,unit\n"), csv.Body)
		assert.Contains(t, csv.Body, ",E-PORTAL,electricity,1-0:1.8.0,", "the meter's hours of the last week")
		gb := fetch("export-greenbutton")
		assert.Equal(t, 200, gb.Status, gb.Body)
		assert.Contains(t, gb.Type, "xml")
		assert.Contains(t, gb.Body, "IntervalReading")
		audit(t, tctx, "downloads")
	})

	t.Run("operator watches live readings rise", func(t *testing.T) {
		octx, cancelTab := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext(), chromedp.WithListener(jsErrs.listen))
		defer cancelTab()
		// The tab lives as long as the context of its first action.
		require.NoError(t, chromedp.Do(octx))
		defer onFailure(t, octx, "operator")
		tctx, cancel := context.WithTimeout(octx, 45*time.Second)
		defer cancel()

		// A meter that last reported seven hours ago: the alarm evaluator
		// (run here rather than waiting for its interval) raises
		// meter_offline for it.
		provision(t, e.m.Config.Postgres.URL, device.Request{ID: "E-OFFLINE", Utility: meter.Electricity})
		_, err := e.db.Pool.Exec(ctx, `insert into meter_state (meter_id, state, updated_at) values ('E-OFFLINE', '\x00', now() - interval '7 hours')`)
		require.NoError(t, err)
		_, err = e.m.Alerts.Evaluate(ctx)
		require.NoError(t, err)
		var alarm int64
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select id from alarms where kind = 'meter_offline' and subject = 'E-OFFLINE' and state = 'active'`).Scan(&alarm))

		require.NoError(t, chromedp.Do(tctx, chromedp.Navigate(e.base+"/operator/")))
		signIn(t, tctx, e.inbox, operatorPhone)
		start, err := chromedp.Run(tctx, chromedp.Poll[string](`document.getElementById('live-total') && document.getElementById('live-total').dataset.value`,
			chromedp.WithPollingTimeout(15*time.Second)))
		require.NoError(t, err)
		n0, err := strconv.Atoi(start)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, n0, 24*4, "the readings published before")
		connected, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("live-connected")))
		require.NoError(t, err)
		assert.Equal(t, "1", connected)

		// Publish while watching: the counter follows.
		for range 20 {
			require.NoError(t, e.meter.publish(e.meter.message()))
		}
		got, err := chromedp.Run(tctx, chromedp.Poll[string](fmt.Sprintf(`(() => { const v = document.getElementById('live-total').dataset.value; return Number(v) >= %d && v; })()`, n0+20*4),
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
		if err != nil {
			screenshot(t, tctx, "operator-dashboard-failed")
			now, _ := chromedp.Run(octx, chromedp.Evaluate[string](`document.getElementById('live-total').dataset.value + ' ' + document.getElementById('live-status').textContent`))
			t.Fatalf("the live counter did not rise by the 80 readings published: from %d, now %s: %v", n0, now, err)
		}
		assert.Equal(t, strconv.Itoa(n0+80), got)
		rate, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`Number(document.getElementById('live-rate').textContent.replace(/,/g, '')) >= 0`))
		require.NoError(t, err)
		assert.True(t, rate)

		// Consumption by region comes from the seeded household and the meter.
		require.NoError(t, chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS("#regions-table table"))))
		regions, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS("#regions-table table")))
		require.NoError(t, err)
		assert.Contains(t, regions, "seed")
		assert.Contains(t, regions, "electricity")
		require.NoError(t, chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS("#live figure.chart svg"))))

		// The other sections show what the API has: fleet statistics, the
		// payments of the household, no bill runs yet.
		require.NoError(t, chromedp.Do(tctx, chromedp.WaitVisible(chromedp.ID("fleet-tiles"))))
		fleet, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("fleet")))
		require.NoError(t, err)
		assert.Contains(t, fleet, "Meters by utility and status")
		never, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("fleet-never")))
		require.NoError(t, err)
		var neverWant int
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select count(*) from meters m where status = 'active' and not exists (select 1 from meter_state s where s.meter_id = m.id)`).Scan(&neverWant))
		assert.Equal(t, strconv.Itoa(neverWant), never, "meters that never reported")
		payments, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("payments")))
		require.NoError(t, err)
		assert.Contains(t, payments, "succeeded")
		runs, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("bill-runs")))
		require.NoError(t, err)
		assert.Contains(t, runs, "No bill runs yet.")

		// The alarm is active; acknowledge it with a note, by keyboard.
		row := fmt.Sprintf(`tr[data-alarm-id="%d"]`, alarm)
		require.NoError(t, chromedp.Do(tctx,
			chromedp.WaitVisible(chromedp.CSS("#alarms-active "+row)),
			chromedp.SendKeys(chromedp.ID("alarm-note"), "meter replaced"),
			chromedp.Focus(chromedp.ID(fmt.Sprintf("ack-%d", alarm))),
			chromedp.KeyEvent(kb.Enter),
			chromedp.WaitVisible(chromedp.CSS("#alarms-acknowledged "+row)),
		))
		gone, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`!document.querySelector('#alarms-active `+row+`')`))
		require.NoError(t, err)
		assert.True(t, gone, "no longer among the active alarms")
		tiles, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`!!document.querySelector('#live #live-total')`))
		require.NoError(t, err)
		assert.True(t, tiles, "announcing the acknowledgement leaves the live tiles in place")
		var state, note string
		var by *int64
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select a.state, a.acknowledged_by, e.note from alarms a join alarm_events e on e.alarm_id = a.id and e.state = 'acknowledged'
			where a.id = $1`, alarm).Scan(&state, &by, &note))
		assert.Equal(t, "acknowledged", state)
		assert.NotNil(t, by, "by the operator")
		assert.Equal(t, "meter replaced", note)
		audit(t, tctx, "operator")
		screenshot(t, tctx, "operator-dashboard")
	})

	assert.Empty(t, jsErrs.list(), "script errors in the pages")
}
