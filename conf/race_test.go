//go:build race

package conf

// raceDetector: the race detector slows the parser about tenfold; tests
// that only measure one goroutine's work on huge inputs scale down.
const raceDetector = true
