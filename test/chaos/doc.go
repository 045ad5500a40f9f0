// Package chaos holds the randomized fault-schedule suite (issue 13): schedules drawn from a
// seed of domain controllers stopping and starting, replication held back and released, the
// operator crashing and restarting, a second cluster's operator appearing on the same path, key
// and KEK rotations and replica pods coming and going, each followed by a healing phase and a
// check of the key-safety invariants. See docs/testing.md ("Randomized fault schedules").
package chaos
