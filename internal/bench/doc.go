// Package bench measures Gantry against its performance targets: what the
// invocation gateway adds to a call compared with calling the same function
// directly (RunInvoke), and how fast `gantry dev` starts and how much memory
// it holds when idle (RunStartup), how fast the scheduler places at fleet
// scale (RunSchedule), and what 1,000 heartbeating agents cost the server
// (RunAgents).
//
// Both run the real thing rather than a model of it: RunInvoke starts a dev
// platform in this process (embedded etcd and NATS, control plane, local
// agent) and RunStartup runs the gantry binary as a subprocess. Every
// function here returns a result struct and keeps no global state, so the
// CLI only parses flags and prints.
package bench
