package alert

import (
	"context"
	"encoding/json"
	"time"
)

// Kind names a kind of household alert.
type Kind string

// Household alert kinds.
const (
	KindBudget           Kind = "budget"            // 50, 80, 100 % of a budget reached (budget.crossed)
	KindProjectedOver    Kind = "projected_over"    // the cycle's projected cost is above a budget
	KindBillUpcoming     Kind = "bill_upcoming"     // a bill is due in a few days
	KindBillIssued       Kind = "bill_issued"       // a bill was issued (bill.issued)
	KindBillOverdue      Kind = "bill_overdue"      // a bill is unpaid past its due date (bill.overdue)
	KindPaymentConfirm   Kind = "payment_confirm"   // a payment waits for its code (payment.otp_sent)
	KindPaymentSucceeded Kind = "payment_succeeded" // payment.succeeded
	KindPaymentFailed    Kind = "payment_failed"    // payment.failed or payment.expired
	KindAbnormalUsage    Kind = "abnormal_usage"    // today well above the household's own baseline
	KindLeak             Kind = "leak"              // water or gas flowing all night
	KindMeterSilent      Kind = "meter_silent"      // a meter has not reported for hours
)

// Kinds lists every household alert kind.
var Kinds = []Kind{KindBudget, KindProjectedOver, KindBillUpcoming, KindBillIssued, KindBillOverdue, KindPaymentConfirm,
	KindPaymentSucceeded, KindPaymentFailed, KindAbnormalUsage, KindLeak, KindMeterSilent}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// Channel is a way an alert reaches a household.
type Channel string

const (
	// InApp is the portal's inbox and the live push to open portals.
	InApp Channel = "inapp"
	// SMS goes to the household's verified phone, outside quiet hours.
	SMS Channel = "sms"
)

// Alert is one alert to a household.
type Alert struct {
	ID int64 `json:"id"`
	// Key names the condition and its period; it is unique.
	Key         string          `json:"-"`
	HouseholdID int64           `json:"household_id"`
	AccountID   int64           `json:"account_id,omitempty"`
	Kind        Kind            `json:"kind"`
	Title       string          `json:"title"`
	Body        string          `json:"body"`
	Data        json.RawMessage `json:"data,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	ReadAt      *time.Time      `json:"read_at,omitempty"`
}

// Delivery is one channel of one alert, as the sender sees it.
type Delivery struct {
	Alert   Alert
	Channel Channel
	// NotBefore holds an SMS until quiet hours end.
	NotBefore time.Time
	// Attempt counts claims of this delivery, from 1.
	Attempt int
	// SMSID is the sms_messages row of an SMS already handed to the sender.
	SMSID int64
}

// Decision is an alert decided by a rule: what to record, before it has an
// id. Household and account come from the condition.
type Decision struct {
	Key         string
	HouseholdID int64
	AccountID   int64
	Kind        Kind
	Title, Body string
	Data        map[string]any
}

// AlarmState is where an operator alarm is in its life.
type AlarmState string

const (
	AlarmActive       AlarmState = "active"
	AlarmAcknowledged AlarmState = "acknowledged"
	AlarmCleared      AlarmState = "cleared"
)

// Valid reports whether s is a known state.
func (s AlarmState) Valid() bool {
	return s == AlarmActive || s == AlarmAcknowledged || s == AlarmCleared
}

// Alarm kinds.
const (
	AlarmMeterOffline   = "meter_offline"
	AlarmVEERate        = "vee_rate"
	AlarmIngestLag      = "ingest_lag"
	AlarmStoreDown      = "store_down"
	AlarmPaymentFailure = "payment_failure_rate"
)

// Alarm is an operator alarm: one kind of trouble with one subject (a
// meter, a store), from raised to cleared.
type Alarm struct {
	ID             int64        `json:"id"`
	Kind           string       `json:"kind"`
	Subject        string       `json:"subject"`
	State          AlarmState   `json:"state"`
	Message        string       `json:"message"`
	RaisedAt       time.Time    `json:"raised_at"`
	LastSeenAt     time.Time    `json:"last_seen_at"`
	AcknowledgedAt *time.Time   `json:"acknowledged_at,omitempty"`
	AcknowledgedBy int64        `json:"acknowledged_by,omitempty"`
	ClearedAt      *time.Time   `json:"cleared_at,omitempty"`
	History        []AlarmEvent `json:"history,omitempty"`
}

// AlarmEvent is one transition of an alarm.
type AlarmEvent struct {
	State  AlarmState `json:"state"`
	At     time.Time  `json:"at"`
	UserID int64      `json:"user_id,omitempty"`
	Note   string     `json:"note,omitempty"`
}

// Condition is an alarm condition that holds now.
type Condition struct {
	Kind    string
	Subject string
	Message string
	// Since is when the condition began, when known before now (a store
	// that was down while the alarm could not be written).
	Since time.Time
}

// Probe is a dependency whose health raises a store_down alarm.
type Probe struct {
	Name  string
	Check func(context.Context) error
}

// LagSource reports the ingest pipeline's lag: journal records not yet
// confirmed by the stores (ingest.Pipeline implements it).
type LagSource interface {
	Lag() uint64
}
