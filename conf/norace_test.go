//go:build !race

package conf

const raceDetector = false
