#include "migrator/patterns.hpp"

#include <algorithm>
#include <cstdint>
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

}  // namespace migrator
