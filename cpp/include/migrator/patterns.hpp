// What one GPU can earn in a stretch of slots: the best pattern (a maximal layout and a
// tenant for each of its instances). The ILP builder bounds each period's Goodput with it
// (docs/model.md, constraint 14) and the greedy start plan takes it as a candidate.
#pragma once

#include <array>
#include <vector>

#include "migrator/ilp_builder.hpp"

namespace migrator {

// Every valid set of the GPU's placements to which none of them can be added, as sorted
// placement indices (the geometry core's enumeration over these placements only).
std::vector<std::vector<int>> maximal_layouts(const GpuInput& gpu);

struct Pattern {
    double value = 0.0;
    std::vector<int> task;      // per placement: inference task 1 + 2i, or -1 for no instance
    std::vector<double> served;  // n_tenants x (t1 - t0): requests served per slot
};

// Which placement serves whom does not change a pattern's value, only how many instances of
// each profile each tenant gets, so a dynamic programme over tenants on profile-count vectors
// finds the best one exactly. Each instance serves inference through the whole stretch with
// no downtime, and a profile's best capacity stands for all its placements: an upper bound
// on what the GPU can earn, reached by the pattern it returns when capacities agree.
class PatternSearch {
  public:
    PatternSearch(const GpuInput& gpu, int n_tenants);

    // False where the count vectors are too many to search quickly (nothing is bounded then).
    bool usable() const { return states_ > 0; }

    // `accuracy` (earned per request) and `arrivals` are n_tenants x horizon; the stretch is
    // slots [t0, t1) of `slot_s` seconds. `ready`, where given, is per slot of the stretch
    // the share a new instance serves (set-up downtime); as many instances of a profile as
    // now serve a tenant (GpuInput::current) count as kept and serve it fully. `penalty` is
    // charged per instance that is not kept (a starting plan's reconfiguration cost; the
    // period bounds, which bound Goodput alone, leave it 0).
    Pattern best(const std::vector<double>& accuracy, const std::vector<double>& arrivals, int horizon, int t0,
                 int t1, double slot_s, const std::vector<double>& ready = {}, double penalty = 0.0) const;

  private:
    int state_of(const std::vector<int>& counts) const;
    int new_instances(int tenant, int state) const;  // instances of `state` not kept for the tenant

    const GpuInput& gpu_;
    int n_tenants_;
    int profiles_;
    int states_ = 0;
    std::vector<int> radix_;
    std::vector<int> digits_;                 // states x profiles
    std::vector<std::array<int, 3>> splits_;  // (state, one tenant's part, the rest)
    std::vector<std::vector<int>> layouts_;   // maximal layouts
    std::vector<int> layout_states_;          // their count vectors
    std::vector<double> capacity_;            // n_tenants x profiles, req/s
    std::vector<int> kept_;                   // n_tenants x profiles, instances now serving
};

// One GPU's best timeline over a plan's periods: which task each placement holds in each
// period (the configuration master's pricing, docs/model.md). `value` gives, for each
// (start, period, placement, task), what an instance earns in the period: value[((s + 1) *
// periods + j) * placements + q) * tasks + k] for an instance of task k at placement q
// whose run started in period s (-1: it runs since before the plan, see `current`), so that
// set-up downtime, however many periods it spans, is the caller's to price. An instance is
// new where its placement held nothing or another task the period before (the current
// instances before period 0) and pays `penalty`. Exact: every valid layout lies within a
// maximal one, so each period's layout is taken among `layouts` (maximal placement sets)
// with any of its placements left empty; given which periods a placement may be used in, its
// best tasks are a chain over periods (a dynamic programme on the task and its run's start),
// and the layouts' sequence is searched depth first, pruned by the chains' values with every
// later period allowed (a chain is never worth less with more periods allowed).
struct Timeline {
    double value = 0.0;
    std::vector<int> task;  // periods x placements: the task, -1 for no instance
};

Timeline best_timeline(const std::vector<std::vector<int>>& layouts, int periods, int placements, int tasks,
                       const std::vector<double>& value, const std::vector<int>& current, double penalty);

}  // namespace migrator
