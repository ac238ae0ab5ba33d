#include "migrator/ilp_builder.hpp"

#include "migrator/patterns.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace migrator {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
using Terms = std::vector<std::pair<int, double>>;

// Collects columns and rows as triplets, then lays the matrix out column-wise.
class Arrays {
  public:
    int col(double cost, double lower, double upper, bool integer) {
        m_.col_cost.push_back(cost);
        m_.col_lower.push_back(lower);
        m_.col_upper.push_back(upper);
        m_.integrality.push_back(integer ? 1 : 0);
        m_.n_integers += integer ? 1 : 0;
        return static_cast<int>(m_.col_cost.size()) - 1;
    }

    void row(double lower, double upper, const Terms& terms) {
        const int r = static_cast<int>(m_.row_lower.size());
        m_.row_lower.push_back(lower);
        m_.row_upper.push_back(upper);
        for (const auto& [c, v] : terms) {
            if (v == 0.0) continue;
            rows_.push_back(r);
            cols_.push_back(c);
            values_.push_back(v);
        }
    }

    ModelArrays& model() { return m_; }

    ModelArrays finish() {
        const std::size_t n = m_.col_cost.size();
        m_.a_start.assign(n + 1, 0);
        for (int c : cols_) ++m_.a_start[c + 1];
        for (std::size_t c = 0; c < n; ++c) m_.a_start[c + 1] += m_.a_start[c];
        std::vector<int> next(m_.a_start.begin(), m_.a_start.end() - 1);
        m_.a_index.resize(cols_.size());
        m_.a_value.resize(cols_.size());
        // Triplets are in row order, so each column's entries come out sorted by row.
        for (std::size_t t = 0; t < cols_.size(); ++t) {
            const int at = next[cols_[t]]++;
            m_.a_index[at] = rows_[t];
            m_.a_value[at] = values_[t];
        }
        return std::move(m_);
    }

  private:
    ModelArrays m_;
    std::vector<int> rows_, cols_;
    std::vector<double> values_;
};

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

void check_input(const PlanInput& in, int horizon) {
    const std::size_t n = static_cast<std::size_t>(in.n_tenants);
    require(in.n_tenants >= 0, "n_tenants must not be negative");
    require(!in.periods.empty(), "periods must not be empty");
    for (int p : in.periods) require(p >= 1, "period lengths must be at least 1");
    require(in.slot_s > 0, "slot_s must be positive");
    require(in.retrain_instances >= 0, "retrain_instances must not be negative");
    require(in.arrivals.size() == n * horizon, "arrivals must be n_tenants x horizon");
    for (const auto* v : {&in.acc_before, &in.acc_after, &in.work_left, &in.work_full, &in.terminal_gain})
        require(v->size() == n, "tenant arrays must have n_tenants entries");
    require(in.floor.empty() || in.floor.size() == n, "floor must be empty or have n_tenants entries");
    require(in.served_elsewhere.empty() || in.served_elsewhere.size() == n * horizon,
            "served_elsewhere must be empty or n_tenants x horizon");
    require(in.floor_weight >= 0.0, "floor_weight must not be negative");
    for (const auto* v : {&in.done0, &in.window, &in.offset})
        require(v->size() == n, "tenant arrays must have n_tenants entries");
    for (std::size_t g = 0; g < in.gpus.size(); ++g) {
        const GpuInput& gpu = in.gpus[g];
        const std::size_t q = gpu.memory_mask.size();
        const std::string where = "gpu " + std::to_string(g) + ": ";
        require(gpu.compute.size() == q && gpu.profile.size() == q && gpu.engines.size() == q &&
                    gpu.current.size() == q,
                where + "placement arrays must have the same length");
        require(gpu.capacity.size() == n * q && gpu.speed.size() == n * q,
                where + "capacity and speed must be n_tenants x placements");
        for (int p : gpu.profile)
            require(p >= 0 && p < static_cast<int>(gpu.max_count.size()), where + "profile index out of range");
        for (int k : gpu.current)
            require(k >= -1 && k <= 2 * in.n_tenants, where + "current task out of range");
    }
}

// The model of docs/model.md for one PlanInput; the numbers in comments are its constraints.
class PlanBuilder {
  public:
    explicit PlanBuilder(const PlanInput& in) : in_(in), n_(in.n_tenants), k_(2 * in.n_tenants + 1) {
        horizon_ = 0;
        for (int length : in.periods) {
            first_.push_back(horizon_);
            for (int t = 0; t < length; ++t) period_of_.push_back(static_cast<int>(first_.size()) - 1);
            horizon_ += length;
        }
        check_input(in, horizon_);
        for (int i = 0; i < n_; ++i) {
            retrains_.push_back(in.window[i] > 0 && in.acc_after[i] > in.acc_before[i]);
            rate_.push_back(max_rate(i));
            first_setup_.push_back(already_retraining(i) ? 0.0 : in.setup_s);
        }
        // Retraining that cannot finish in time to lift any slot earns nothing unless a
        // terminal value credits it: such a tenant gets no retraining variables at all.
        // This is the one place that decides it (Python reads it from ModelArrays::retrains).
        for (int i = 0; i < n_; ++i) {
            bool pays = retrains_[i] && in.terminal_gain[i] > 0.0;
            for (int t = 0; retrains_[i] && !pays && t < horizon_; ++t) pays = completion_decided(i, t);
            // A retraining under way keeps its variables, so that the program can leave its
            // instance as it is rather than re-assign it (and pay the set-up) for nothing.
            plans_retraining_.push_back(pays || (retrains_[i] && already_retraining(i)));
        }
    }

    ModelArrays build() {
        for (std::size_t g = 0; g < in_.gpus.size(); ++g) add_gpu(static_cast<int>(g));
        goodput_terms_.assign(first_.size(), {});
        best_accuracy_.assign(static_cast<std::size_t>(n_) * horizon_, 0.0);
        for (int i = 0; i < n_; ++i) add_tenant(i);
        if (in_.retrain_instances > 0) add_retraining_limits();
        if (in_.strengthen) add_period_bounds();
        if (in_.break_symmetry) add_symmetry_order();
        ModelArrays m = a_.finish();
        m.retrains.assign(plans_retraining_.begin(), plans_retraining_.end());
        return m;
    }

  private:
    struct GpuColumns {
        int q = 0;
        std::vector<int> z, n;  // (J, Q, K), -1 where absent
        int at(int j, int q_, int k) const { return (j * q + q_) * kk + k; }
        int kk = 0;
    };

    double downtime(int d) const {
        return std::min(1.0, std::max(0.0, in_.setup_s / in_.slot_s - d));
    }

    bool allowed(const GpuInput& gpu, int q, int k) const {
        if (k == 0) return true;
        const int i = (k - 1) / 2;
        const std::size_t at = static_cast<std::size_t>(i) * gpu.memory_mask.size() + q;
        if ((k - 1) % 2 == 0) return gpu.capacity[at] > 0.0;
        return plans_retraining_[i] && gpu.speed[at] > 0.0;
    }

    void add_gpu(int g) {
        const GpuInput& gpu = in_.gpus[g];
        const int q_count = static_cast<int>(gpu.memory_mask.size());
        const int periods = static_cast<int>(first_.size());
        GpuColumns cols;
        cols.q = q_count;
        cols.kk = k_;
        cols.z.assign(static_cast<std::size_t>(periods) * q_count * k_, -1);
        cols.n = cols.z;
        ModelArrays& m = a_.model();
        m.z_offset.push_back(static_cast<int>(m.z_column.size()));
        for (int j = 0; j < periods; ++j)
            for (int q = 0; q < q_count; ++q)
                for (int k = 0; k < k_; ++k)
                    if (allowed(gpu, q, k)) cols.z[cols.at(j, q, k)] = a_.col(0.0, 0.0, 1.0, true);
        a_.model().z_column.insert(a_.model().z_column.end(), cols.z.begin(), cols.z.end());
        for (int j = 0; j < periods; ++j) add_validity(gpu, cols, j);
        add_transitions(gpu, cols);
        gpus_.push_back(std::move(cols));
    }

    void add_validity(const GpuInput& gpu, const GpuColumns& cols, int j) {
        const int q_count = cols.q;
        auto occupancy = [&](auto weight) {
            Terms terms;
            for (int q = 0; q < q_count; ++q) {
                const double w = weight(q);
                if (w == 0.0) continue;
                for (int k = 0; k < k_; ++k)
                    if (cols.z[cols.at(j, q, k)] >= 0) terms.emplace_back(cols.z[cols.at(j, q, k)], w);
            }
            return terms;
        };
        // (2) memory slices; they also give (1), one task per placement.
        for (int s = 0; s < 64; ++s) {
            const std::uint64_t bit = std::uint64_t{1} << s;
            Terms terms = occupancy([&](int q) { return (gpu.memory_mask[q] & bit) ? 1.0 : 0.0; });
            if (terms.size() > 1) a_.row(-kInf, 1.0, terms);
        }
        // (3) compute slices.
        int total = 0;
        for (int c : gpu.compute) total += c;
        if (total > gpu.compute_slices)
            a_.row(-kInf, gpu.compute_slices, occupancy([&](int q) { return double(gpu.compute[q]); }));
        // (4) profile counts, where they can bind.
        for (int p = 0; p < static_cast<int>(gpu.max_count.size()); ++p) {
            const int n = static_cast<int>(std::count(gpu.profile.begin(), gpu.profile.end(), p));
            if (n > gpu.max_count[p])
                a_.row(-kInf, gpu.max_count[p], occupancy([&](int q) { return gpu.profile[q] == p ? 1.0 : 0.0; }));
        }
        // (5) media engines, where they can bind.
        for (int e = 0; e < 4; ++e) {
            int sum = 0;
            for (const auto& eng : gpu.engines) sum += eng[e];
            if (sum > gpu.engine_totals[e])
                a_.row(-kInf, gpu.engine_totals[e], occupancy([&](int q) { return double(gpu.engines[q][e]); }));
        }
    }

    // (6) an instance is new when its placement held no instance or another task before.
    void add_transitions(const GpuInput& gpu, GpuColumns& cols) {
        const int periods = static_cast<int>(first_.size());
        for (int j = 0; j < periods; ++j)
            for (int q = 0; q < cols.q; ++q)
                for (int k = 0; k < k_; ++k) {
                    const int z = cols.z[cols.at(j, q, k)];
                    if (z < 0 || (k == 0 && in_.penalty == 0.0)) continue;
                    const int n = a_.col(-in_.penalty, 0.0, 1.0, false);
                    cols.n[cols.at(j, q, k)] = n;
                    if (j == 0) {
                        const double before = gpu.current[q] == k ? 1.0 : 0.0;
                        a_.row(-before, kInf, {{n, 1.0}, {z, -1.0}});
                    } else {
                        const int prev = cols.z[cols.at(j - 1, q, k)];
                        Terms terms{{n, 1.0}, {z, -1.0}};
                        if (prev >= 0) terms.emplace_back(prev, 1.0);
                        a_.row(0.0, kInf, terms);
                    }
                }
    }

    // The serving share E(t, q, k) of docs/model.md: z itself, or an e column bounded by (7).
    int serving(int g, int t, int q, int k) {
        const GpuColumns& cols = gpus_[g];
        const int j = period_of_[t];
        const int z = cols.z[cols.at(j, q, k)];
        if (z < 0) return -1;
        Terms limits;
        for (int jp = 0; jp <= j; ++jp) {
            const double f = downtime(t - first_[jp]);
            const int n = cols.n[cols.at(jp, q, k)];
            if (f > 0.0 && n >= 0) limits.emplace_back(n, f);
        }
        if (limits.empty()) return z;
        const int e = a_.col(0.0, 0.0, 1.0, false);
        // A start in t's own period bounds e by z - f n rather than by 1 - f n and e <= z:
        // the same integer points (n may be 0 where z is, and costs nothing less), but in
        // the relaxation a half-open new instance no longer serves half a slot (tested
        // against the reference, which keeps the plain rows).
        const int own = cols.n[cols.at(j, q, k)];
        const bool own_start = in_.strengthen && own >= 0 && downtime(t - first_[j]) > 0.0;
        if (!own_start) a_.row(-kInf, 0.0, {{e, 1.0}, {z, -1.0}});
        for (const auto& [n, f] : limits) {
            if (own_start && n == own) a_.row(-kInf, 0.0, {{e, 1.0}, {z, -1.0}, {n, f}});
            else a_.row(-kInf, 1.0, {{e, 1.0}, {n, f}});
        }
        return e;
    }

    // Slot t's share of every instance serving task k, weighted by a per-placement figure.
    Terms supply(int t, int k, const std::vector<double> GpuInput::*figure, int tenant, double scale) {
        Terms terms;
        for (std::size_t g = 0; g < in_.gpus.size(); ++g) {
            const GpuInput& gpu = in_.gpus[g];
            const int q_count = static_cast<int>(gpu.memory_mask.size());
            for (int q = 0; q < q_count; ++q) {
                const double w = (gpu.*figure)[static_cast<std::size_t>(tenant) * q_count + q];
                if (w <= 0.0) continue;
                const int col = serving(static_cast<int>(g), t, q, k);
                if (col >= 0) terms.emplace_back(col, -scale * w);
            }
        }
        return terms;
    }

    // Whether the retraining of the window holding t could have finished in slots before t,
    // every GPU retraining flat out (one set-up at slot 0 unless it already runs). Where it
    // could not, c[i][t] is 0 and gets no column: an exact reduction.
    bool can_finish_by(int i, int t) const {
        const Window w = window_at(i, t);
        const double work = w.index == 0 ? in_.work_left[i] : in_.work_full[i];
        const double seconds = (t - w.first) * in_.slot_s - (w.first == 0 ? first_setup_[i] : 0.0);
        return work <= 0.0 || rate_[i] * std::max(0.0, seconds) >= work * (1.0 - 1e-9);
    }

    bool window_start(int i, int t) const {
        return in_.window[i] > 0 && (in_.offset[i] + t) % in_.window[i] == 0;
    }

    struct Window {
        int index = 0;  // 0 = the window the decision falls in
        int first = 0;  // its first slot inside the horizon
    };

    Window window_at(int i, int t) const {
        const int w = in_.window[i];
        if (w <= 0) return {};
        const int first = std::max(0, t - (in_.offset[i] + t) % w);
        // Windows that start after slot 0 and by t.
        const int later = (w - in_.offset[i] % w) % w == 0 ? w : (w - in_.offset[i] % w) % w;
        return {first >= later ? (first - later) / w + 1 : 0, first};
    }

    // Whether c[i][t] is a decision: the tenant retrains, slot t does not start its window nor
    // lies in a current window already finished, and its work could be done before t.
    bool completion_decided(int i, int t) const {
        if (!retrains_[i] || t == 0 || window_start(i, t)) return false;
        if (window_at(i, t).index == 0 && in_.done0[i]) return false;
        return can_finish_by(i, t);
    }

    // The most retraining tenant i could get per second: every GPU flat out (a GPU gives at
    // most compute_slices x the best speed per compute slice of its placements), and with a
    // limit of L instances, at most L of the fastest.
    double max_rate(int i) const {
        double rate = 0.0, fastest = 0.0;
        for (const GpuInput& gpu : in_.gpus) {
            const std::size_t q_count = gpu.memory_mask.size();
            double best = 0.0;
            for (std::size_t q = 0; q < q_count; ++q) {
                const double speed = gpu.speed[static_cast<std::size_t>(i) * q_count + q];
                best = std::max(best, speed / std::max(1, gpu.compute[q]));
                fastest = std::max(fastest, speed);
            }
            rate += best * gpu.compute_slices;
        }
        return in_.retrain_instances > 0 ? std::min(rate, in_.retrain_instances * fastest) : rate;
    }

    // (16) At most retrain_instances instances retrain one tenant in a period, over all GPUs:
    // a MIG instance is a CUDA device of its own, without peer-to-peer access to the others,
    // so a retraining job runs on one instance.
    void add_retraining_limits() {
        for (int i = 0; i < n_; ++i) {
            if (!plans_retraining_[i]) continue;
            for (std::size_t j = 0; j < first_.size(); ++j) {
                Terms terms;
                for (const GpuColumns& cols : gpus_)
                    for (int q = 0; q < cols.q; ++q) {
                        const int z = cols.z[cols.at(static_cast<int>(j), q, 2 + 2 * i)];
                        if (z >= 0) terms.emplace_back(z, 1.0);
                    }
                if (static_cast<int>(terms.size()) > in_.retrain_instances) a_.row(-kInf, in_.retrain_instances, terms);
            }
        }
    }

    // Requests of tenant i in slot t that other GPUs serve (0 without served_elsewhere).
    double elsewhere(int i, int t) const {
        return in_.served_elsewhere.empty() ? 0.0
                                            : in_.served_elsewhere[static_cast<std::size_t>(i) * horizon_ + t];
    }

    bool already_retraining(int i) const {
        for (const GpuInput& gpu : in_.gpus)
            for (int k : gpu.current)
                if (k == 2 + 2 * i) return true;
        return false;
    }

    void add_tenant(int i) {
        const int infer = 1 + 2 * i;
        const int retrain = 2 + 2 * i;
        const double gain = in_.acc_after[i] - in_.acc_before[i];
        int window = 0;        // 0 = the window the decision falls in
        int progress = -1;     // P[i][t-1] of the current window, -1 = none yet (zero)
        int completed = -1;    // c[i][t-1], -1 = fixed or absent
        Terms served;          // s[i][t] of every slot, for the floor (17)
        for (int t = 0; t < horizon_; ++t) {
            const bool starts = window_start(i, t);
            window = window_at(i, t).index;
            if (starts) progress = completed = -1;
            // Accuracy of slot t: fixed (before / after) or decided by a completion binary.
            int c = -1;
            double fixed_accuracy = in_.acc_before[i];
            if (retrains_[i]) {
                if (window == 0 && !starts && in_.done0[i]) {
                    fixed_accuracy = in_.acc_after[i];
                } else if (plans_retraining_[i] && completion_decided(i, t)) {
                    c = a_.col(gain * elsewhere(i, t), 0.0, 1.0, true);  // (18)
                    const double work = window == 0 ? in_.work_left[i] : in_.work_full[i];
                    Terms terms{{c, work}};  // (11)
                    if (progress >= 0) terms.emplace_back(progress, -1.0);
                    a_.row(-kInf, 0.0, terms);
                    if (completed >= 0) a_.row(0.0, kInf, {{c, 1.0}, {completed, -1.0}});  // (12)
                }
            }
            const double arrived = in_.arrivals[static_cast<std::size_t>(i) * horizon_ + t];
            if (arrived > 0.0) {
                const int s = a_.col(fixed_accuracy, 0.0, arrived, false);
                served.emplace_back(s, 1.0);
                goodput_terms_[period_of_[t]].emplace_back(s, fixed_accuracy);
                best_accuracy_[static_cast<std::size_t>(i) * horizon_ + t] = fixed_accuracy + (c >= 0 ? gain : 0.0);
                Terms cap = supply(t, infer, &GpuInput::capacity, i, in_.slot_s);  // (8)
                cap.emplace_back(s, 1.0);
                a_.row(-kInf, 0.0, cap);
                if (c >= 0) {  // (9)
                    const int u = a_.col(gain, 0.0, arrived, false);
                    goodput_terms_[period_of_[t]].emplace_back(u, gain);
                    a_.row(-kInf, 0.0, {{u, 1.0}, {s, -1.0}});
                    a_.row(-kInf, 0.0, {{u, 1.0}, {c, -arrived}});
                }
            }
            if (plans_retraining_[i] && !(window == 0 && in_.done0[i])) {  // (10) running sum
                const int p = a_.col(0.0, 0.0, kInf, false);
                Terms terms = supply(t, retrain, &GpuInput::speed, i, in_.slot_s);
                terms.emplace_back(p, 1.0);
                if (progress >= 0) terms.emplace_back(progress, -1.0);
                a_.row(0.0, 0.0, terms);
                progress = p;
            }
            completed = c;
        }
        // (17) the tenant's floor: requests short of it cost floor_weight each.
        const double floor = in_.floor.empty() ? 0.0 : in_.floor[i];
        if (floor > 0.0) {
            served.emplace_back(a_.col(-in_.floor_weight, 0.0, floor, false), 1.0);
            a_.row(floor, kInf, served);
        }
        // (13) terminal value: the share of the last window's retraining done by the end.
        const double terminal = in_.terminal_gain[i];
        if (plans_retraining_[i] && terminal > 0.0 && progress >= 0) {
            const int tau = a_.col(terminal, 0.0, 1.0, false);
            const double work = window == 0 ? in_.work_left[i] : in_.work_full[i];
            a_.row(-kInf, 0.0, {{tau, work}, {progress, -1.0}});
        }
    }

    // Symmetry. Swapping the whole timelines of two twin placements of a GPU (the same
    // profile, figures, current task and overlap with every other placement, as 1g@0 and
    // 1g@1 of an A100) maps every plan to one of the same value. So period 0 may hold each
    // group of twins in order of a rank of their states (one per task, the lowest for no
    // instance): any plan can be sorted into it, and the solver no longer explores mirrored
    // copies of its branches. Alike GPUs are left to HiGHS's own symmetry detection: rows
    // ordering them measured slower (docs/model.md).
    void add_symmetry_order() {
        for (std::size_t g = 0; g < in_.gpus.size(); ++g) {
            const GpuInput& gpu = in_.gpus[g];
            const int q_count = static_cast<int>(gpu.memory_mask.size());
            std::vector<bool> grouped(q_count, false);
            for (int q = 0; q < q_count; ++q) {
                if (grouped[q]) continue;
                int last = q;
                for (int r = q + 1; r < q_count; ++r) {
                    if (grouped[r] || !twins(gpu, q, r)) continue;
                    grouped[r] = true;
                    Terms terms = first_period_rank(static_cast<int>(g), last, 1.0);  // rank(last) >= rank(r)
                    for (const auto& term : first_period_rank(static_cast<int>(g), r, -1.0)) terms.push_back(term);
                    if (!terms.empty()) a_.row(0.0, kInf, terms);
                    for (int v : {static_cast<int>(g), q, r}) a_.model().twin_pairs.push_back(v);
                    last = r;
                }
            }
        }
    }

    // The rank of placement q's state in period 0: K - k for task k, 0 for no instance.
    Terms first_period_rank(int g, int q, double sign) const {
        const GpuColumns& cols = gpus_[g];
        Terms terms;
        for (int k = 0; k < k_; ++k) {
            const int z = cols.z[cols.at(0, q, k)];
            if (z >= 0) terms.emplace_back(z, sign * (k_ - k));
        }
        return terms;
    }

    bool twins(const GpuInput& gpu, int q, int r) const {
        const std::size_t q_count = gpu.memory_mask.size();
        if (gpu.profile[q] != gpu.profile[r] || gpu.compute[q] != gpu.compute[r] ||
            gpu.engines[q] != gpu.engines[r] || gpu.current[q] != gpu.current[r])
            return false;
        for (int i = 0; i < n_; ++i) {
            const std::size_t a = static_cast<std::size_t>(i) * q_count;
            if (gpu.capacity[a + q] != gpu.capacity[a + r] || gpu.speed[a + q] != gpu.speed[a + r]) return false;
        }
        for (std::size_t o = 0; o < q_count; ++o) {
            if (static_cast<int>(o) == q || static_cast<int>(o) == r) continue;
            const bool with_q = (gpu.memory_mask[o] & gpu.memory_mask[q]) != 0;
            const bool with_r = (gpu.memory_mask[o] & gpu.memory_mask[r]) != 0;
            if (with_q != with_r) return false;
        }
        return true;
    }

    // (14) Goodput of period j <= what the GPUs could earn in it, each on its own with all
    // of the demand (min(a, x + y) <= min(a, x) + min(a, y) makes the sum an upper bound).
    // Redundant for integer points, but it cuts off the fractional sharing of instances
    // between tenants that keeps the relaxation's bound percent above the optimum.
    void add_period_bounds() {
        a_.model().period_bounds.assign(first_.size(), kInf);
        // GPUs alike in everything but their current layout have the same bound: search once.
        std::vector<PatternSearch> searches;
        std::vector<const GpuInput*> searched;
        std::vector<int> multiplicity;
        for (const GpuInput& gpu : in_.gpus) {
            std::size_t s = 0;
            while (s < searched.size() && !same_bound(*searched[s], gpu)) ++s;
            if (s == searched.size()) {
                searches.emplace_back(gpu, n_);
                if (!searches.back().usable()) return;
                searched.push_back(&gpu);
                multiplicity.push_back(0);
            }
            ++multiplicity[s];
        }
        for (std::size_t j = 0; j < first_.size(); ++j) {
            const int t0 = first_[j], t1 = t0 + in_.periods[j];
            // In the first period only the instances that already serve a tenant need no
            // set-up; later ones may have been set up in the period before.
            std::vector<double> ready;
            for (int t = t0; j == 0 && t < t1; ++t) ready.push_back(1.0 - downtime(t - t0));
            double most = 0.0, everything = 0.0;
            for (std::size_t s = 0; s < searches.size(); ++s)
                most += multiplicity[s] * searches[s].best(best_accuracy_, in_.arrivals, horizon_, t0, t1, in_.slot_s, ready).value;
            for (int i = 0; i < n_; ++i)
                for (int t = t0; t < t1; ++t) {
                    const std::size_t at = static_cast<std::size_t>(i) * horizon_ + t;
                    everything += best_accuracy_[at] * in_.arrivals[at];
                }
            // Only where it can bind; the slack guards against rounding in the sums.
            const double bound = std::min(most, everything) * (1.0 + 1e-9) + 1e-7;
            a_.model().period_bounds[j] = bound;
            if (most < everything * (1.0 - 1e-9)) a_.row(-kInf, bound, goodput_terms_[j]);
        }
    }

    static bool same_bound(const GpuInput& a, const GpuInput& b) {
        return a.memory_mask == b.memory_mask && a.compute == b.compute && a.profile == b.profile &&
               a.engines == b.engines && a.max_count == b.max_count && a.compute_slices == b.compute_slices &&
               a.engine_totals == b.engine_totals && a.capacity == b.capacity && a.current == b.current;
    }

    const PlanInput& in_;
    int n_;
    int k_;
    int horizon_ = 0;
    std::vector<int> first_;
    std::vector<int> period_of_;
    std::vector<bool> retrains_;             // the tenant's accuracy can change by retraining
    std::vector<bool> plans_retraining_;     // ... and the program decides its retraining
    std::vector<double> rate_;               // max_rate(i)
    std::vector<double> first_setup_;        // set-up before the first window's retraining
    std::vector<GpuColumns> gpus_;
    std::vector<Terms> goodput_terms_;       // per period: the objective's Goodput columns
    std::vector<double> best_accuracy_;      // N x T: the most a request can earn
    Arrays a_;
};

}  // namespace

ModelArrays build_plan_model(const PlanInput& input) { return PlanBuilder(input).build(); }

}  // namespace migrator
