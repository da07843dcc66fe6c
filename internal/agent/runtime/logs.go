package runtime

import "io"

// Log streams: which of an instance's outputs a line came from.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// LogSource says whose output a log writer receives: the instance and
// what it runs, never its secrets.
type LogSource struct {
	InstanceID        string
	FunctionID        string
	FunctionVersionID string
	FunctionName      string
	NCAID             string
}

// SourceOf is the LogSource of a spec.
func SourceOf(s Spec) LogSource {
	return LogSource{InstanceID: s.InstanceID, FunctionID: s.FunctionID, FunctionVersionID: s.FunctionVersionID,
		FunctionName: s.FunctionName, NCAID: s.NCAID}
}

// LogOutput returns where a runtime copies one output stream of an
// instance, besides its own log, each time the instance starts. The
// writer must not block for long nor fail: the instance's pipe waits on
// it. The agent's Logs.Output is one.
type LogOutput func(src LogSource, stream string) io.Writer
