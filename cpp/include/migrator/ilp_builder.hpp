// The planning integer program of docs/model.md, built as arrays for HiGHS.
//
// Plain C++17: the inputs are flat vectors (row-major where two-dimensional) and the output
// is the column-wise sparse matrix, bounds, costs and integrality that Highs::passModel takes,
// plus the column of every z variable so the solution can be decoded.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace migrator {

struct GpuInput {
    std::vector<std::uint64_t> memory_mask;  // Q
    std::vector<int> compute;                // Q
    std::vector<int> profile;                // Q, index into max_count
    std::vector<std::array<int, 4>> engines; // Q
    std::vector<int> max_count;              // profiles
    int compute_slices = 0;
    std::array<int, 4> engine_totals{};
    std::vector<double> capacity;            // N x Q, req/s of an instance serving tenant i
    std::vector<double> speed;               // N x Q, retraining speed (fraction of a full GPU)
    std::vector<int> current;                // Q, task now at the placement, -1 none
};

struct PlanInput {
    int n_tenants = 0;
    double slot_s = 1.0;
    std::vector<int> periods;                // lengths in slots
    double setup_s = 0.0;
    double penalty = 0.0;
    std::vector<double> arrivals;            // N x T
    std::vector<double> acc_before;          // N
    std::vector<double> acc_after;           // N
    std::vector<double> work_left;           // N
    std::vector<double> work_full;           // N
    std::vector<int> done0;                  // N (0/1)
    std::vector<int> window;                 // N, slots, 0 = never retrains
    std::vector<int> offset;                 // N, position of slot 0 in its window
    std::vector<double> terminal_gain;       // N, value of finishing the last window (13)
    // N x T or empty: requests of each tenant in each slot that other GPUs serve (a split
    // part's view); a completion c[i][t] earns the accuracy gain on them too (18).
    std::vector<double> served_elsewhere;
    // N, requests to serve within SLO over the horizon (17; 0: no floor), and what each
    // request short of it costs.
    std::vector<double> floor;
    double floor_weight = 0.0;
    std::vector<GpuInput> gpus;
    // Instances that may retrain one tenant in the same period, over all GPUs (16); 0: any
    // number, their progress adding up.
    int retrain_instances = 0;
    // Add the redundant rows that tighten the relaxation (docs/model.md, "Tightening"); off
    // gives the plain model, for tests and measurements.
    bool strengthen = true;
    // Order twin placements (interchangeable within a GPU) in the first period (docs/model.md,
    // "Symmetry"); off gives the model without those rows.
    bool break_symmetry = true;
};

struct ModelArrays {
    std::vector<double> col_cost, col_lower, col_upper;
    std::vector<int> integrality;            // 1 for integer columns
    std::vector<int> a_start, a_index;       // column-wise (CSC)
    std::vector<double> a_value;
    std::vector<double> row_lower, row_upper;
    // Decoding: z_column[z_offset[g] + (j * Q_g + q) * K + k] is the column of z[g][j][q][k]
    // or -1 where the pair earns nothing and has no variable.
    std::vector<int> z_column;
    std::vector<int> z_offset;
    // Per tenant, 1 where the program decides its retraining; 0 where the tenant does not
    // retrain or its retraining cannot finish in time to earn anything (no variables).
    std::vector<int> retrains;
    // (g, q, r) triplets, flat: placement r of GPU g is a twin of q, the first of its group;
    // the symmetry rows hold each group in order in period 0 (a starting plan must follow
    // it to be taken).
    std::vector<int> twin_pairs;
    // Per period, a bound on its Goodput (constraint 14), +inf where none was computed; their
    // sum bounds the whole objective, whatever a solver proves.
    std::vector<double> period_bounds;
    double objective_offset = 0.0;
    int n_integers = 0;
};

// Throws std::invalid_argument naming the inconsistent input.
ModelArrays build_plan_model(const PlanInput& input);

}  // namespace migrator
