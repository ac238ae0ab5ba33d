// MIG geometry: which sets of GPU-instance placements one GPU accepts at once.
//
// A Geometry is built from data (the built-in tables or NVML); nothing here knows a GPU
// model. Every possible instance position is a "slot" (profile, start, size); a layout is a
// set of slot indices. Slots are sorted by (start, profile name), so a layout sorted by slot
// index is already in canonical order.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace migrator {

// Media engines as NVML counts them per GPU-instance profile. They bound layouts through
// the GPU totals (e.g. one OFA on H100, so only one `+me` instance).
inline constexpr int kEngineKinds = 4;
using Engines = std::array<int, kEngineKinds>;
inline constexpr std::array<const char*, kEngineKinds> kEngineNames = {"decoders", "encoders",
                                                                       "jpegs", "ofas"};

struct Placement {
    int start = 0;
    int size = 0;  // in memory slices
};

struct Profile {
    std::string name;
    int compute_slices = 0;
    int memory_slices = 0;
    long long memory_mib = 0;
    int max_count = 0;
    std::vector<Placement> placements;
    Engines engines{};
};

struct Slot {
    int profile = 0;  // index into Geometry::profiles()
    int start = 0;
    int size = 0;
    std::uint64_t memory_mask = 0;
};

enum class Rule : int {
    ok = 0,
    duplicate = 1,      // the same slot twice
    memory_overlap = 2, // two instances share a memory slice
    max_count = 3,      // more instances of a profile than it allows
    compute_total = 4,  // compute slices over the GPU's
    engines = 5,        // media engines over the GPU's
};

// The first rule a layout breaks. `first`/`second` are positions in the checked layout
// (duplicate, memory_overlap), or the profile index (max_count), or the engine kind (engines).
struct Violation {
    Rule rule = Rule::ok;
    int first = -1;
    int second = -1;
    int value = 0;
    int limit = 0;
};

// From one layout to another. Created slots are split into those that fit on slices free
// before anything is destroyed (in canonical order, greedily) and those that must wait.
struct Transition {
    std::vector<int> kept;
    std::vector<int> destroyed;
    std::vector<int> created_before_destroy;
    std::vector<int> created_after_destroy;
    bool make_before_break() const { return created_after_destroy.empty(); }
};

class Geometry {
  public:
    // Throws std::invalid_argument naming the inconsistent field.
    Geometry(std::string name, int memory_slices, int compute_slices, std::vector<Profile> profiles,
             Engines engine_totals);

    const std::string& name() const { return name_; }
    int memory_slices() const { return memory_slices_; }
    int compute_slices() const { return compute_slices_; }
    const std::vector<Profile>& profiles() const { return profiles_; }
    const Engines& engine_totals() const { return engine_totals_; }
    const std::vector<Slot>& slots() const { return slots_; }

    // Index of the slot of `profile` starting at `start`, or -1.
    int slot_index(int profile, int start) const;

    Violation check(const std::vector<int>& layout) const;
    bool is_valid(const std::vector<int>& layout) const { return check(layout).rule == Rule::ok; }

    // Slots that can be added to a valid layout, in slot order.
    std::vector<int> addable(const std::vector<int>& layout) const;

    // All valid layouts (the empty one included), or only those no slot can be added to.
    std::vector<std::vector<int>> enumerate(bool maximal) const;

    Transition transition(const std::vector<int>& from, const std::vector<int>& to) const;

    // Canonical text: "1g.10gb@0,3g.40gb@4" (slots sorted by index).
    std::string format(std::vector<int> layout) const;

  private:
    struct Usage;  // running totals of a partial layout
    bool fits(const Usage& usage, int slot) const;
    void add(Usage& usage, int slot) const;
    Usage usage_of(const std::vector<int>& layout) const;
    void check_slot_index(int slot) const;

    std::string name_;
    int memory_slices_;
    int compute_slices_;
    std::vector<Profile> profiles_;
    Engines engine_totals_;
    std::vector<Slot> slots_;
};

}  // namespace migrator
