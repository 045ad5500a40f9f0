package controllers

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// A rotation.period below 1h stored before the API server checked it (the CEL rule lets an
// unchanged old value through) is reported, and rotates nothing: 1s added a permanent version on
// every reconcile, and 0s and -1h meant never without saying so.
func TestRotationPeriodBelowTheMinimum(t *testing.T) {
	for _, tc := range []struct {
		period time.Duration
		bad    bool
	}{
		{time.Second, true},
		{0, true},
		{-time.Hour, true},
		{time.Hour, false},
	} {
		t.Run(tc.period.String(), func(t *testing.T) {
			clock := newPWClock()
			dir := newFakeAD(clock.now)
			c := newPWCluster(t, dir, clock, pwOptions{mutate: func(o *dkmv1.DKMContainer) {
				o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: tc.period}}
			}})
			for range 3 {
				_, _ = c.reconcile()
				clock.advance(2 * time.Hour)
			}
			keys := len(c.get().Status.Keys)
			if !tc.bad {
				c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
				if keys < 2 {
					t.Fatalf("%d key version(s) after two due rotations with period %s", keys, tc.period)
				}
				return
			}
			got := c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonInvalidRotationPeriod)
			c.expectCond(dkmv1.ConditionReady, metav1.ConditionFalse, dkmv1.ReasonInvalidRotationPeriod)
			if !slices.Contains(c.eventReasons(), dkmv1.ReasonInvalidRotationPeriod) {
				t.Errorf("no %s event", dkmv1.ReasonInvalidRotationPeriod)
			}
			if keys != 1 {
				t.Errorf("%d key versions, want the first alone: nothing rotates on an invalid period", keys)
			}
			if ring := c.r.Keys.Get(c.key); ring == nil || ring.Len() != 1 {
				t.Errorf("the key is not served: %v", ring)
			}
			t.Logf("KeyReady: %s", got.Message)
		})
	}
}
