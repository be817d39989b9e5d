package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadAckedLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acked.csv")
	log := "meter_id,seq,time\n" +
		"M-1,10,2025-11-22T03:00:00.000Z\n" +
		"M-1,11,2025-11-22T03:15:00.000Z\n" +
		"M-2,7,2025-11-22T04:00:00.000Z\n" +
		"M-1,10,2025-11-22T03:00:00.000Z\n"
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	meters, dups, err := readAckedLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if dups != 1 {
		t.Errorf("duplicates = %d, want 1", dups)
	}
	if len(meters) != 2 || len(meters["M-1"].seqs) != 2 || len(meters["M-2"].seqs) != 1 {
		t.Fatalf("meters = %v", meters)
	}
	m1 := meters["M-1"]
	if got, want := time.UnixMilli(m1.minMs).UTC(), time.Date(2025, 11, 22, 3, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("min time %v, want %v", got, want)
	}
	if got, want := time.UnixMilli(m1.maxMs).UTC(), time.Date(2025, 11, 22, 3, 15, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("max time %v, want %v", got, want)
	}
}

func TestReadAckedLogRefusesBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acked.csv")
	if err := os.WriteFile(path, []byte("meter_id,seq,time\nM-1,x,2025-11-22T03:00:00Z\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readAckedLog(path); err == nil {
		t.Fatal("a bad seq was accepted")
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(d)
	if p.N != 100 || p.Min != 1 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 {
		t.Errorf("percentiles = %+v", p)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Error("empty sample should give zero percentiles")
	}
}
