package main

import (
	"math"
	"testing"
)

func TestAdd(t *testing.T) {
	for _, tc := range []struct{ a, b, want float64 }{
		{2.5, 3.7, 6.2}, // the seeds' example
		{-1, 1, 0},
		{1e308, 1e308, math.Inf(1)},
	} {
		if got := add(tc.a, tc.b); got != tc.want {
			t.Errorf("add(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestMul(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{6, 7, 42},
		{-3, 4, -12},
		{math.MaxInt64, 2, -2}, // wraps around
	} {
		if got := mul(tc.a, tc.b); got != tc.want {
			t.Errorf("mul(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestSub32AndHalf(t *testing.T) {
	if got := sub32(math.MinInt32, 1); got != math.MaxInt32 {
		t.Errorf("sub32(MinInt32, 1) = %d, want wrap-around to MaxInt32", got)
	}
	if got := sub32(10, 3); got != 7 {
		t.Errorf("sub32(10, 3) = %d", got)
	}
	if got := half(5); got != 2.5 {
		t.Errorf("half(5) = %v", got)
	}
}
