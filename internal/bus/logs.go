package bus

// subjectLogsPrefix roots the subjects agents publish their instances'
// log lines on: gantry.logs.<cluster>.<function>.<version>.<instance>.
// Only the control plane subscribes (agents may publish only their own
// cluster's branch and subscribe to none), so one cluster's function
// output never reaches another's agent.
const subjectLogsPrefix = "gantry.logs."

// LogsSubject is where the agent of clusterID publishes lines of one
// instance (as model.LogBatch).
func LogsSubject(clusterID, functionID, versionID, instanceID string) string {
	return subjectLogsPrefix + clusterID + "." + functionID + "." + versionID + "." + instanceID
}

// VersionLogsSubjects matches the lines of every instance of one function
// version, on any cluster; an empty versionID matches every version.
func VersionLogsSubjects(functionID, versionID string) string {
	if versionID == "" {
		versionID = "*"
	}
	return subjectLogsPrefix + "*." + functionID + "." + versionID + ".*"
}

// LogsRequestSubject is where the agent of clusterID answers requests for
// its instances' recent lines (model.LogsRequest). It is under the
// agent's own inbox prefix, which only the control plane can publish to.
func LogsRequestSubject(clusterID string) string { return AgentInboxPrefix(clusterID) + ".logs" }
