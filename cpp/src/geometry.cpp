#include "migrator/geometry.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>
#include <utility>

namespace migrator {

struct Geometry::Usage {
    std::uint64_t memory_mask = 0;
    int compute = 0;
    std::vector<int> counts;
    Engines engines{};
};

namespace {

std::uint64_t mask_of(int start, int size) {
    const std::uint64_t ones = size >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << size) - 1);
    return ones << start;
}

[[noreturn]] void bad(const std::string& where, const std::string& what) {
    throw std::invalid_argument(where.empty() ? what : where + ": " + what);
}

void check_profile(const Profile& p, int memory_slices, int compute_slices) {
    const std::string where = "profile " + p.name;
    if (p.name.empty()) bad("profile", "name must not be empty");
    if (p.compute_slices < 1 || p.compute_slices > compute_slices)
        bad(where, "compute_slices must be in 1.." + std::to_string(compute_slices));
    if (p.memory_slices < 1 || p.memory_slices > memory_slices)
        bad(where, "memory_slices must be in 1.." + std::to_string(memory_slices));
    if (p.max_count < 1) bad(where, "max_count must be at least 1");
    if (p.placements.empty()) bad(where, "placements must not be empty");
    if (p.memory_mib < 0) bad(where, "memory_mib must not be negative");
    for (const auto& pl : p.placements) {
        if (pl.size != p.memory_slices)
            bad(where, "placement (" + std::to_string(pl.start) + ", " + std::to_string(pl.size) +
                           ") has a size other than memory_slices " + std::to_string(p.memory_slices));
        if (pl.start < 0 || pl.start + pl.size > memory_slices)
            bad(where, "placement (" + std::to_string(pl.start) + ", " + std::to_string(pl.size) +
                           ") lies outside memory slices 0.." + std::to_string(memory_slices - 1));
    }
    for (int e : p.engines)
        if (e < 0) bad(where, "engine counts must not be negative");
}

}  // namespace

Geometry::Geometry(std::string name, int memory_slices, int compute_slices,
                   std::vector<Profile> profiles, Engines engine_totals)
    : name_(std::move(name)),
      memory_slices_(memory_slices),
      compute_slices_(compute_slices),
      profiles_(std::move(profiles)),
      engine_totals_(engine_totals) {
    if (memory_slices_ < 1 || memory_slices_ > 64) bad("", "memory_slices must be in 1..64");
    if (compute_slices_ < 1) bad("", "compute_slices must be at least 1");
    if (profiles_.empty()) bad("", "profiles must not be empty");
    for (int e : engine_totals_)
        if (e < 0) bad("", "engine totals must not be negative");
    std::unordered_set<std::string> names;
    for (const auto& p : profiles_) {
        check_profile(p, memory_slices_, compute_slices_);
        if (!names.insert(p.name).second) bad("", "profile " + p.name + " appears twice");
    }
    for (int i = 0; i < static_cast<int>(profiles_.size()); ++i) {
        for (const auto& pl : profiles_[i].placements)
            slots_.push_back(Slot{i, pl.start, pl.size, mask_of(pl.start, pl.size)});
    }
    std::sort(slots_.begin(), slots_.end(), [this](const Slot& a, const Slot& b) {
        if (a.start != b.start) return a.start < b.start;
        return profiles_[a.profile].name < profiles_[b.profile].name;
    });
    for (std::size_t i = 1; i < slots_.size(); ++i) {
        if (slots_[i].start == slots_[i - 1].start && slots_[i].profile == slots_[i - 1].profile)
            bad("profile " + profiles_[slots_[i].profile].name,
                "placement start " + std::to_string(slots_[i].start) + " is listed twice");
    }
}

int Geometry::slot_index(int profile, int start) const {
    for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
        if (slots_[i].profile == profile && slots_[i].start == start) return i;
    }
    return -1;
}

void Geometry::check_slot_index(int slot) const {
    if (slot < 0 || slot >= static_cast<int>(slots_.size()))
        throw std::out_of_range("slot index " + std::to_string(slot) + " is not in 0.." +
                                std::to_string(slots_.size()));
}

bool Geometry::fits(const Usage& usage, int slot) const {
    const Slot& s = slots_[slot];
    const Profile& p = profiles_[s.profile];
    if (usage.memory_mask & s.memory_mask) return false;
    if (usage.counts[s.profile] + 1 > p.max_count) return false;
    if (usage.compute + p.compute_slices > compute_slices_) return false;
    for (int k = 0; k < kEngineKinds; ++k)
        if (usage.engines[k] + p.engines[k] > engine_totals_[k]) return false;
    return true;
}

void Geometry::add(Usage& usage, int slot) const {
    const Slot& s = slots_[slot];
    const Profile& p = profiles_[s.profile];
    usage.memory_mask |= s.memory_mask;
    usage.counts[s.profile] += 1;
    usage.compute += p.compute_slices;
    for (int k = 0; k < kEngineKinds; ++k) usage.engines[k] += p.engines[k];
}

Geometry::Usage Geometry::usage_of(const std::vector<int>& layout) const {
    Usage usage;
    usage.counts.assign(profiles_.size(), 0);
    for (int slot : layout) add(usage, slot);
    return usage;
}

Violation Geometry::check(const std::vector<int>& layout) const {
    for (int slot : layout) check_slot_index(slot);
    // Rule by rule over the whole layout, so the reported rule is the first in order.
    const int n = static_cast<int>(layout.size());
    for (int i = 0; i < n; ++i)
        for (int j = i + 1; j < n; ++j)
            if (layout[i] == layout[j]) return {Rule::duplicate, i, j, 2, 1};
    for (int i = 0; i < n; ++i)
        for (int j = i + 1; j < n; ++j)
            if (slots_[layout[i]].memory_mask & slots_[layout[j]].memory_mask)
                return {Rule::memory_overlap, i, j, 0, 0};
    const Usage usage = usage_of(layout);
    for (int p = 0; p < static_cast<int>(profiles_.size()); ++p) {
        if (usage.counts[p] > profiles_[p].max_count)
            return {Rule::max_count, p, -1, usage.counts[p], profiles_[p].max_count};
    }
    if (usage.compute > compute_slices_)
        return {Rule::compute_total, -1, -1, usage.compute, compute_slices_};
    for (int k = 0; k < kEngineKinds; ++k) {
        if (usage.engines[k] > engine_totals_[k])
            return {Rule::engines, k, -1, usage.engines[k], engine_totals_[k]};
    }
    return {};
}

std::vector<int> Geometry::addable(const std::vector<int>& layout) const {
    for (int slot : layout) check_slot_index(slot);
    const Usage usage = usage_of(layout);
    std::vector<int> out;
    for (int s = 0; s < static_cast<int>(slots_.size()); ++s)
        if (fits(usage, s)) out.push_back(s);
    return out;
}

std::vector<std::vector<int>> Geometry::enumerate(bool maximal) const {
    std::vector<std::vector<int>> out;
    std::vector<int> current;
    const int n = static_cast<int>(slots_.size());
    auto is_maximal = [&](const Usage& usage) {
        for (int s = 0; s < n; ++s)
            if (fits(usage, s)) return false;
        return true;
    };
    // Depth-first over slots in increasing index: each set is visited once, already sorted.
    auto visit = [&](auto&& self, Usage& usage, int next) -> void {
        if (!maximal || is_maximal(usage)) out.push_back(current);
        for (int s = next; s < n; ++s) {
            if (!fits(usage, s)) continue;
            Usage saved = usage;
            add(usage, s);
            current.push_back(s);
            self(self, usage, s + 1);
            current.pop_back();
            usage = std::move(saved);
        }
    };
    Usage usage = usage_of({});
    visit(visit, usage, 0);
    return out;
}

Transition Geometry::transition(const std::vector<int>& from, const std::vector<int>& to) const {
    for (int slot : from) check_slot_index(slot);
    for (int slot : to) check_slot_index(slot);
    std::vector<int> a(from), b(to);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    Transition t;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(t.kept));
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(t.destroyed));
    std::vector<int> created;
    std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(created));
    Usage usage = usage_of(a);
    for (int s : created) {
        if (fits(usage, s)) {
            add(usage, s);
            t.created_before_destroy.push_back(s);
        } else {
            t.created_after_destroy.push_back(s);
        }
    }
    return t;
}

std::string Geometry::format(std::vector<int> layout) const {
    for (int slot : layout) check_slot_index(slot);
    std::sort(layout.begin(), layout.end());
    std::string text;
    for (std::size_t i = 0; i < layout.size(); ++i) {
        const Slot& s = slots_[layout[i]];
        if (i) text += ',';
        text += profiles_[s.profile].name;
        text += '@';
        text += std::to_string(s.start);
    }
    return text;
}

}  // namespace migrator
