package agent

import (
	"bufio"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
)

// HostNode describes this machine as the one node of a process-runtime
// cluster: its (simulated) GPUs, and the CPU cores and memory the host
// really has, which instance types share in proportion to their GPUs.
func HostNode(name, gpuModel string, gpuMemoryGB, gpus int) model.Node {
	return model.Node{Name: name, GPUModel: gpuModel, GPUMemoryGB: gpuMemoryGB, GPUs: gpus,
		CPUCores: goruntime.NumCPU(), MemoryGiB: hostMemoryGiB()}
}

// hostMemoryGiB reads MemTotal from /proc/meminfo; 0 where there is none.
func hostMemoryGiB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.Atoi(fields[1])
			if err != nil {
				return 0
			}
			return kib >> 20
		}
	}
	return 0
}
