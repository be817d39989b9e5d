package ingest

import "github.com/prometheus/client_golang/prometheus"

type pipelineMetrics struct {
	duplicates   prometheus.Counter
	badRecords   prometheus.Counter
	exceptions   *prometheus.CounterVec
	sinkErrors   *prometheus.CounterVec
	unwritable   *prometheus.CounterVec
	sinkUp       *prometheus.GaugeVec
	writeSeconds *prometheus.HistogramVec
	batchRows    prometheus.Histogram
}

func newPipelineMetrics(reg prometheus.Registerer, p *Pipeline) *pipelineMetrics {
	m := &pipelineMetrics{
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "mf_ingest_duplicate_messages_total", Help: "Messages recognised as already applied."}),
		badRecords: prometheus.NewCounter(prometheus.CounterOpts{Name: "mf_journal_bad_records_total", Help: "Journal records that could not be decoded."}),
		exceptions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mf_vee_exceptions_total", Help: "Validation rule firings, by rule."}, []string{"rule"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mf_sink_errors_total", Help: "Failed store writes (retried), by store."}, []string{"sink"}),
		unwritable: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mf_sink_unwritable_batches_total", Help: "Batches a store refused for good (bad rows skipped), by store."}, []string{"sink"}),
		sinkUp:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mf_sink_up", Help: "1 when the last write to the store succeeded."}, []string{"sink"}),
		writeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mf_sink_write_seconds", Help: "Latency of one batch write, by store.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"sink"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mf_sink_batch_rows", Help: "Rows (readings, intervals, exceptions) per flushed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
	}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mf_ingest_lag_records", Help: "Journal records not yet confirmed by the stores."},
		func() float64 { return float64(p.Lag()) })
	if reg != nil {
		reg.MustRegister(m.duplicates, m.badRecords, m.exceptions, m.sinkErrors, m.unwritable, m.sinkUp, m.writeSeconds, m.batchRows, lag)
	}
	return m
}
