package agent

import (
	"fmt"
	"sort"
)

// gpuPool hands out GPU indices of the cluster's (single, local) node so that
// no GPU is ever given to two instances at once.
type gpuPool struct {
	total int
	owner map[int]string   // gpu index -> instance id
	held  map[string][]int // instance id -> indices
}

func newGPUPool(total int) *gpuPool {
	return &gpuPool{total: total, owner: map[int]string{}, held: map[string][]int{}}
}

// assign gives n free GPUs to an instance, or returns the ones it already has.
func (p *gpuPool) assign(instanceID string, n int) ([]int, error) {
	if got, ok := p.held[instanceID]; ok {
		return got, nil
	}
	var got []int
	for i := 0; i < p.total && len(got) < n; i++ {
		if _, taken := p.owner[i]; !taken {
			got = append(got, i)
		}
	}
	if len(got) < n {
		return nil, fmt.Errorf("agent: instance needs %d GPUs but only %d of %d are free on this cluster", n, len(got), p.total)
	}
	for _, i := range got {
		p.owner[i] = instanceID
	}
	sort.Ints(got)
	p.held[instanceID] = got
	return got, nil
}

// release returns an instance's GPUs.
func (p *gpuPool) release(instanceID string) {
	for _, i := range p.held[instanceID] {
		delete(p.owner, i)
	}
	delete(p.held, instanceID)
}

// of returns the GPUs an instance holds.
func (p *gpuPool) of(instanceID string) []int { return p.held[instanceID] }
