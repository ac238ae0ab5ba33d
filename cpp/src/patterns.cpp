#include "migrator/patterns.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "migrator/geometry.hpp"

namespace migrator {
namespace {

int lowest_bit(std::uint64_t mask) {
    int b = 0;
    while (b < 64 && !((mask >> b) & 1U)) ++b;
    return b;
}

int bit_count(std::uint64_t mask) {
    int n = 0;
    for (; mask; mask &= mask - 1) ++n;
    return n;
}

// Beyond these sizes a search costs more than the bound saves; the model is exact without it.
constexpr long long kMaxStates = 20000;
constexpr long long kMaxSplits = 500000;

}  // namespace

std::vector<std::vector<int>> maximal_layouts(const GpuInput& gpu) {
    // The geometry core's enumerator, on a geometry made of just these placements.
    const int q_count = static_cast<int>(gpu.memory_mask.size());
    std::vector<Profile> profiles(gpu.max_count.size());
    int memory_slices = 1;
    for (int q = 0; q < q_count; ++q) {
        Profile& p = profiles[gpu.profile[q]];
        const int start = lowest_bit(gpu.memory_mask[q]);
        const int size = bit_count(gpu.memory_mask[q]);
        memory_slices = std::max(memory_slices, start + size);
        p.name = "profile" + std::to_string(gpu.profile[q]);
        p.compute_slices = gpu.compute[q];
        p.memory_slices = size;
        p.max_count = gpu.max_count[gpu.profile[q]];
        p.placements.push_back({start, size});
        p.engines = gpu.engines[q];
    }
    // Profiles without a placement here cannot be in any layout.
    std::vector<int> kept;
    std::vector<Profile> present;
    for (const Profile& p : profiles) {
        kept.push_back(p.placements.empty() ? -1 : static_cast<int>(present.size()));
        if (!p.placements.empty()) present.push_back(p);
    }
    if (present.empty()) return {{}};
    const Geometry geometry("planning placements", memory_slices, gpu.compute_slices, present, gpu.engine_totals);
    std::vector<int> placement_of(geometry.slots().size(), -1);
    for (int q = 0; q < q_count; ++q)
        placement_of[geometry.slot_index(kept[gpu.profile[q]], lowest_bit(gpu.memory_mask[q]))] = q;
    std::vector<std::vector<int>> out;
    for (const auto& layout : geometry.enumerate(true)) {
        std::vector<int> placements;
        for (int slot : layout) placements.push_back(placement_of[slot]);
        std::sort(placements.begin(), placements.end());
        out.push_back(std::move(placements));
    }
    return out;
}

PatternSearch::PatternSearch(const GpuInput& gpu, int n_tenants)
    : gpu_(gpu), n_tenants_(n_tenants), profiles_(static_cast<int>(gpu.max_count.size())) {
    layouts_ = maximal_layouts(gpu);
    radix_.assign(profiles_, 1);
    std::vector<std::vector<int>> counts;
    for (const auto& layout : layouts_) {
        std::vector<int> c(profiles_, 0);
        for (int q : layout) ++c[gpu.profile[q]];
        for (int p = 0; p < profiles_; ++p) radix_[p] = std::max(radix_[p], c[p] + 1);
        counts.push_back(std::move(c));
    }
    long long states = 1, splits = 1;
    for (int r : radix_) {
        states *= r;
        splits *= static_cast<long long>(r) * (r + 1) / 2;
    }
    if (states > kMaxStates || splits > kMaxSplits) return;
    states_ = static_cast<int>(states);
    digits_.assign(static_cast<std::size_t>(states_) * profiles_, 0);
    for (int st = 0; st < states_; ++st)
        for (int p = 0, rest = st; p < profiles_; rest /= radix_[p], ++p) digits_[st * profiles_ + p] = rest % radix_[p];
    for (int st = 0; st < states_; ++st)
        for (int sub = 1; sub < states_; ++sub) {
            bool inside = true;
            int rest = 0;
            for (int p = 0, mult = 1; p < profiles_ && inside; mult *= radix_[p], ++p) {
                const int left = digits_[st * profiles_ + p] - digits_[sub * profiles_ + p];
                inside = left >= 0;
                rest += left * mult;
            }
            if (inside) splits_.push_back({st, sub, rest});
        }
    for (const auto& c : counts) layout_states_.push_back(state_of(c));
    const std::size_t q_count = gpu.memory_mask.size();
    capacity_.assign(static_cast<std::size_t>(n_tenants) * profiles_, 0.0);
    for (int i = 0; i < n_tenants; ++i)
        for (std::size_t q = 0; q < q_count; ++q) {
            double& cap = capacity_[static_cast<std::size_t>(i) * profiles_ + gpu.profile[q]];
            cap = std::max(cap, gpu.capacity[static_cast<std::size_t>(i) * q_count + q]);
        }
    kept_.assign(static_cast<std::size_t>(n_tenants) * profiles_, 0);
    for (std::size_t q = 0; q < q_count; ++q) {
        const int k = gpu.current[q];
        if (k > 0 && (k - 1) % 2 == 0 && (k - 1) / 2 < n_tenants) ++kept_[static_cast<std::size_t>((k - 1) / 2) * profiles_ + gpu.profile[q]];
    }
}

int PatternSearch::state_of(const std::vector<int>& counts) const {
    int st = 0;
    for (int p = 0, mult = 1; p < profiles_; mult *= radix_[p], ++p) st += counts[p] * mult;
    return st;
}

int PatternSearch::new_instances(int tenant, int state) const {
    int count = 0;
    for (int p = 0; p < profiles_; ++p)
        count += std::max(0, digits_[state * profiles_ + p] - kept_[static_cast<std::size_t>(tenant) * profiles_ + p]);
    return count;
}

Pattern PatternSearch::best(const std::vector<double>& accuracy, const std::vector<double>& arrivals, int horizon,
                            int t0, int t1, double slot_s, const std::vector<double>& ready, double penalty) const {
    Pattern out;
    out.task.assign(gpu_.memory_mask.size(), -1);
    out.served.assign(static_cast<std::size_t>(n_tenants_) * (t1 - t0), 0.0);
    if (!usable()) return out;
    // Requests tenant i can be served in slot t by the instances of count vector st.
    auto servable = [&](int i, int st, int t) {
        const std::size_t row = static_cast<std::size_t>(i) * profiles_;
        double per_slot = 0.0;
        for (int p = 0; p < profiles_; ++p) {
            const int m = digits_[st * profiles_ + p];
            const int kept = std::min(m, kept_[row + p]);
            const double share = ready.empty() ? 1.0 : ready[t - t0];
            per_slot += capacity_[row + p] * (kept + (m - kept) * share);
        }
        return std::min(arrivals[static_cast<std::size_t>(i) * horizon + t], slot_s * per_slot);
    };
    // best[st]: the most tenants 0..i earn from the instances in count vector st; part[i][st]:
    // the count vector tenant i gets there (0: none), to read the pattern back.
    std::vector<double> best(states_, 0.0), next(states_), own(states_);
    std::vector<std::vector<int>> part(n_tenants_, std::vector<int>(states_, 0));
    for (int i = 0; i < n_tenants_; ++i) {
        const std::size_t row = static_cast<std::size_t>(i) * horizon;
        for (int st = 0; st < states_; ++st) {
            double value = 0.0;
            for (int t = t0; t < t1; ++t)
                if (accuracy[row + t] > 0.0) value += accuracy[row + t] * servable(i, st, t);
            own[st] = value - penalty * new_instances(i, st);
        }
        next = best;
        for (const auto& [st, sub, rest] : splits_) {
            const double v = best[rest] + own[sub];
            if (v > next[st]) {
                next[st] = v;
                part[i][st] = sub;
            }
        }
        best.swap(next);
    }
    std::size_t chosen = 0;
    for (std::size_t l = 0; l < layouts_.size(); ++l)
        if (best[layout_states_[l]] > best[layout_states_[chosen]]) chosen = l;
    out.value = best[layout_states_[chosen]];
    // Read the tenants' count vectors back, last tenant first, then give each tenant that
    // many placements of each profile, preferring placements that already serve it.
    std::vector<std::vector<int>> wanted(n_tenants_, std::vector<int>(profiles_, 0));
    for (int i = n_tenants_ - 1, st = layout_states_[chosen]; i >= 0; --i) {
        const int sub = part[i][st];
        int rest = 0;
        for (int p = 0, mult = 1; p < profiles_; mult *= radix_[p], ++p) {
            wanted[i][p] = digits_[sub * profiles_ + p];
            rest += (digits_[st * profiles_ + p] - wanted[i][p]) * mult;
        }
        for (int t = t0; t < t1 && sub > 0; ++t) out.served[static_cast<std::size_t>(i) * (t1 - t0) + t - t0] = servable(i, sub, t);
        st = rest;
    }
    for (int pass = 0; pass < 2; ++pass)
        for (int q : layouts_[chosen]) {
            if (out.task[q] >= 0) continue;
            for (int i = 0; i < n_tenants_; ++i) {
                const int k = 1 + 2 * i;
                int& left = wanted[i][gpu_.profile[q]];
                if (left > 0 && (pass == 1 || gpu_.current[q] == k)) {
                    out.task[q] = k;
                    --left;
                    break;
                }
            }
        }
    return out;
}

namespace {

constexpr double kNone = -std::numeric_limits<double>::infinity();

// A placement's best tasks over the periods in `allowed` (bit j: period j may hold an
// instance there). States per period: the task k and its run's start s (index (s + 1) *
// tasks + k), or no instance (the last index); each keeps its value and where it came from.
class Chain {
  public:
    Chain(int periods, int tasks, const std::vector<double>& value, int placements, int q, int now, double penalty)
        : periods_(periods), tasks_(tasks), placements_(placements), q_(q), now_(now), penalty_(penalty),
          value_(value), none_((periods + 1) * tasks) {}

    // The best value with `allowed`, and (where `tasks_out` is given) its tasks per period.
    double best(unsigned allowed, std::vector<int>* tasks_out) const {
        const int states = none_ + 1;
        std::vector<double> score(static_cast<std::size_t>(periods_ + 1) * states, kNone);
        std::vector<int> from(score.size(), -1);
        double* before = &score[0];
        if (now_ >= 0) before[now_] = 0.0;  // s = -1: running since before the plan
        else before[none_] = 0.0;
        for (int j = 0; j < periods_; ++j) {
            const double* prev = &score[static_cast<std::size_t>(j) * states];
            double* next = &score[static_cast<std::size_t>(j + 1) * states];
            int* came = &from[static_cast<std::size_t>(j + 1) * states];
            // The two best states of the period before with different tasks, for new instances.
            int first = -1, second = -1;
            for (int st = 0; st < states; ++st) {
                if (prev[st] == kNone) continue;
                if (first < 0 || prev[st] > prev[first]) {
                    if (first >= 0 && task_of(first) != task_of(st)) second = first;
                    first = st;
                } else if (task_of(st) != task_of(first) && (second < 0 || prev[st] > prev[second])) {
                    second = st;
                }
            }
            next[none_] = prev[first];
            came[none_] = first;
            if (!((allowed >> j) & 1U)) continue;
            for (int st = 0; st < none_; ++st) {  // the same instance goes on
                if (prev[st] == kNone) continue;
                const int s = st / tasks_ - 1, k = st % tasks_;
                next[st] = prev[st] + earns(s, j, k);
                came[st] = st;
            }
            for (int k = 0; k < tasks_; ++k) {  // a new instance (another task, or none before)
                const int by = task_of(first) != k ? first : second;
                if (by < 0) continue;
                const int st = (j + 1) * tasks_ + k;
                const double v = prev[by] + earns(j, j, k) - penalty_;
                if (v > next[st]) {
                    next[st] = v;
                    came[st] = by;
                }
            }
        }
        const double* last = &score[static_cast<std::size_t>(periods_) * states];
        int at = static_cast<int>(std::max_element(last, last + states) - last);
        const double best = last[at];
        if (tasks_out != nullptr) {
            for (int j = periods_; j >= 1; --j) {
                (*tasks_out)[static_cast<std::size_t>(j - 1) * placements_ + q_] = task_of(at);
                at = from[static_cast<std::size_t>(j) * states + at];
            }
        }
        return best;
    }

  private:
    int task_of(int st) const { return st == none_ ? -1 : st % tasks_; }

    double earns(int s, int j, int k) const {
        const std::size_t at = ((static_cast<std::size_t>(s + 1) * periods_ + j) * placements_ + q_) * tasks_ + k;
        return value_[at];
    }

    int periods_, tasks_, placements_, q_, now_;
    double penalty_;
    const std::vector<double>& value_;
    int none_;
};

}  // namespace

Timeline best_timeline(const std::vector<std::vector<int>>& layouts, int periods, int placements, int tasks,
                       const std::vector<double>& value, const std::vector<int>& current, double penalty) {
    if (periods < 1 || periods > 16) throw std::invalid_argument("best_timeline: periods must be 1 to 16");
    if (tasks < 1 || placements < 0 || static_cast<int>(current.size()) != placements)
        throw std::invalid_argument("best_timeline: current must give a task (or -1) per placement");
    if (value.size() != static_cast<std::size_t>(periods + 1) * periods * placements * tasks)
        throw std::invalid_argument("best_timeline: value must be (periods + 1) x periods x placements x tasks");
    for (int k : current)
        if (k >= tasks) throw std::invalid_argument("best_timeline: a current task is out of range");
    const unsigned masks = 1U << periods;
    // chain[q * masks + m]: placement q's best with the periods in m allowed.
    std::vector<Chain> chains;
    std::vector<double> chain(static_cast<std::size_t>(placements) * masks);
    for (int q = 0; q < placements; ++q) {
        chains.emplace_back(periods, tasks, value, placements, q, current[q], penalty);
        for (unsigned m = 0; m < masks; ++m) chain[static_cast<std::size_t>(q) * masks + m] = chains[q].best(m, nullptr);
    }
    std::vector<std::vector<char>> member(layouts.size(), std::vector<char>(placements, 0));
    for (std::size_t l = 0; l < layouts.size(); ++l)
        for (int q : layouts[l]) member[l][q] = 1;
    const unsigned all = masks - 1;
    std::vector<unsigned> mask(placements, 0);
    std::vector<unsigned> best_mask(placements, 0);
    double best = kNone;
    // Depth first over the periods' layouts; `mask` holds each placement's allowed periods so far.
    auto search = [&](auto&& self, int j) -> void {
        const unsigned later = all & ~((1U << j) - 1U);
        double bound = 0.0;
        for (int q = 0; q < placements; ++q) bound += chain[static_cast<std::size_t>(q) * masks + (mask[q] | later)];
        if (bound <= best) return;
        if (j == periods) {
            best = bound;
            best_mask = mask;
            return;
        }
        for (std::size_t l = 0; l < layouts.size(); ++l) {
            for (int q = 0; q < placements; ++q)
                if (member[l][q]) mask[q] |= 1U << j;
            self(self, j + 1);
            for (int q = 0; q < placements; ++q) mask[q] &= ~(1U << j);
        }
    };
    search(search, 0);
    Timeline out;
    out.task.assign(static_cast<std::size_t>(periods) * placements, -1);
    if (best == kNone) return out;  // no layout at all: nothing can be placed
    out.value = best;
    for (int q = 0; q < placements; ++q) chains[q].best(best_mask[q], &out.task);
    return out;
}

}  // namespace migrator
