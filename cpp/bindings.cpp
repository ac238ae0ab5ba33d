// The only file that includes pybind11: one bind_<area>(m) per C++ area.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "migrator/geometry.hpp"
#include "migrator/ilp_builder.hpp"
#include "migrator/patterns.hpp"

namespace py = pybind11;
using namespace migrator;

namespace {

void bind_geometry(py::module_& m) {
    py::class_<Placement>(m, "Placement", "One allowed instance position (start, size) in memory slices.")
        .def(py::init<int, int>(), py::arg("start"), py::arg("size"))
        .def_readonly("start", &Placement::start)
        .def_readonly("size", &Placement::size);

    py::class_<Profile>(m, "Profile", "A GPU-instance profile as the C++ core sees it.")
        .def(py::init([](std::string name, int compute_slices, int memory_slices, long long memory_mib,
                         int max_count, const std::vector<std::pair<int, int>>& placements,
                         Engines engines) {
                 Profile p{std::move(name), compute_slices, memory_slices, memory_mib, max_count, {}, engines};
                 for (const auto& [start, size] : placements) p.placements.push_back({start, size});
                 return p;
             }),
             py::arg("name"), py::arg("compute_slices"), py::arg("memory_slices"), py::arg("memory_mib"),
             py::arg("max_count"), py::arg("placements"), py::arg("engines"))
        .def_readonly("name", &Profile::name)
        .def_readonly("compute_slices", &Profile::compute_slices)
        .def_readonly("memory_slices", &Profile::memory_slices)
        .def_readonly("memory_mib", &Profile::memory_mib)
        .def_readonly("max_count", &Profile::max_count)
        .def_readonly("engines", &Profile::engines);

    py::enum_<Rule>(m, "Rule", "Which validity rule a layout breaks.")
        .value("ok", Rule::ok)
        .value("duplicate", Rule::duplicate)
        .value("memory_overlap", Rule::memory_overlap)
        .value("max_count", Rule::max_count)
        .value("compute_total", Rule::compute_total)
        .value("engines", Rule::engines);

    py::class_<Violation>(m, "Violation", "The first rule a layout breaks, with its operands.")
        .def_readonly("rule", &Violation::rule)
        .def_readonly("first", &Violation::first)
        .def_readonly("second", &Violation::second)
        .def_readonly("value", &Violation::value)
        .def_readonly("limit", &Violation::limit);

    py::class_<Transition>(m, "Transition", "Slots kept, destroyed and created between two layouts.")
        .def_readonly("kept", &Transition::kept)
        .def_readonly("destroyed", &Transition::destroyed)
        .def_readonly("created_before_destroy", &Transition::created_before_destroy)
        .def_readonly("created_after_destroy", &Transition::created_after_destroy)
        .def_property_readonly("make_before_break", &Transition::make_before_break);

    py::class_<Geometry>(m, "Geometry", "Validity, enumeration and transitions of MIG layouts.")
        .def(py::init<std::string, int, int, std::vector<Profile>, Engines>(), py::arg("name"),
             py::arg("memory_slices"), py::arg("compute_slices"), py::arg("profiles"),
             py::arg("engine_totals"))
        .def_property_readonly("name", &Geometry::name)
        .def_property_readonly("memory_slices", &Geometry::memory_slices)
        .def_property_readonly("compute_slices", &Geometry::compute_slices)
        .def_property_readonly("engine_totals", &Geometry::engine_totals)
        .def_property_readonly("profiles", &Geometry::profiles)
        .def("slots",
             [](const Geometry& g) {
                 std::vector<std::tuple<int, int, int>> out;
                 for (const auto& s : g.slots()) out.emplace_back(s.profile, s.start, s.size);
                 return out;
             },
             "Every possible instance as (profile index, start, size), in canonical order.")
        .def("slot_index", &Geometry::slot_index, py::arg("profile"), py::arg("start"))
        .def("check", &Geometry::check, py::arg("layout"))
        .def("is_valid", &Geometry::is_valid, py::arg("layout"))
        .def("addable", &Geometry::addable, py::arg("layout"))
        .def("enumerate", &Geometry::enumerate, py::arg("maximal") = false,
             py::call_guard<py::gil_scoped_release>())
        .def("layouts",
             [](const Geometry& g, bool maximal) {
                 std::vector<std::string> out;
                 {
                     py::gil_scoped_release release;
                     for (const auto& layout : g.enumerate(maximal)) out.push_back(g.format(layout));
                 }
                 return out;
             },
             py::arg("maximal") = false, "Canonical strings of all valid (or maximal) layouts.")
        .def("transition", &Geometry::transition, py::arg("from_layout"), py::arg("to_layout"))
        .def("format", &Geometry::format, py::arg("layout"));
}

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
std::vector<T> to_vector(const Array<T>& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

template <typename T>
py::array_t<T> to_numpy(std::vector<T> v) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(static_cast<py::ssize_t>(heap->size()), heap->data(), owner);
}

GpuInput make_gpu(const Array<std::uint64_t>& memory_mask, const Array<int>& compute,
                  const Array<int>& profile, const Array<int>& engines, const Array<int>& max_count,
                  int compute_slices, const Array<int>& engine_totals, const Array<double>& capacity,
                  const Array<double>& speed, const Array<int>& current) {
    GpuInput g;
    g.memory_mask = to_vector(memory_mask);
    g.compute = to_vector(compute);
    g.profile = to_vector(profile);
    const auto flat = to_vector(engines);
    if (flat.size() != 4 * g.memory_mask.size()) throw std::invalid_argument("engines must be placements x 4");
    for (std::size_t q = 0; q < g.memory_mask.size(); ++q)
        g.engines.push_back({flat[4 * q], flat[4 * q + 1], flat[4 * q + 2], flat[4 * q + 3]});
    g.max_count = to_vector(max_count);
    g.compute_slices = compute_slices;
    const auto totals = to_vector(engine_totals);
    if (totals.size() != 4) throw std::invalid_argument("engine_totals must have 4 entries");
    std::copy(totals.begin(), totals.end(), g.engine_totals.begin());
    g.capacity = to_vector(capacity);
    g.speed = to_vector(speed);
    g.current = to_vector(current);
    return g;
}

void bind_ilp(py::module_& m) {
    py::class_<GpuInput>(m, "GpuInput", "One GPU's placements and what an instance at each earns.")
        .def(py::init(&make_gpu), py::arg("memory_mask"), py::arg("compute"), py::arg("profile"),
             py::arg("engines"), py::arg("max_count"), py::arg("compute_slices"),
             py::arg("engine_totals"), py::arg("capacity"), py::arg("speed"), py::arg("current"));

    py::class_<ModelArrays>(m, "ModelArrays", "The planning program as HiGHS arrays (CSC).")
        .def_property_readonly("col_cost", [](const ModelArrays& a) { return to_numpy(a.col_cost); })
        .def_property_readonly("col_lower", [](const ModelArrays& a) { return to_numpy(a.col_lower); })
        .def_property_readonly("col_upper", [](const ModelArrays& a) { return to_numpy(a.col_upper); })
        .def_property_readonly("integrality", [](const ModelArrays& a) { return to_numpy(a.integrality); })
        .def_property_readonly("a_start", [](const ModelArrays& a) { return to_numpy(a.a_start); })
        .def_property_readonly("a_index", [](const ModelArrays& a) { return to_numpy(a.a_index); })
        .def_property_readonly("a_value", [](const ModelArrays& a) { return to_numpy(a.a_value); })
        .def_property_readonly("row_lower", [](const ModelArrays& a) { return to_numpy(a.row_lower); })
        .def_property_readonly("row_upper", [](const ModelArrays& a) { return to_numpy(a.row_upper); })
        .def_property_readonly("z_column", [](const ModelArrays& a) { return to_numpy(a.z_column); })
        .def_property_readonly("z_offset", [](const ModelArrays& a) { return to_numpy(a.z_offset); })
        .def_property_readonly("retrains", [](const ModelArrays& a) { return to_numpy(a.retrains); })
        .def_property_readonly("twin_pairs", [](const ModelArrays& a) { return to_numpy(a.twin_pairs); })
        .def_property_readonly("period_bounds", [](const ModelArrays& a) { return to_numpy(a.period_bounds); })
        .def_readonly("n_integers", &ModelArrays::n_integers);

    m.def(
        "build_plan_model",
        [](int n_tenants, double slot_s, const Array<int>& periods, double setup_s, double penalty,
           const Array<double>& arrivals, const Array<double>& acc_before, const Array<double>& acc_after,
           const Array<double>& work_left, const Array<double>& work_full, const Array<int>& done0,
           const Array<int>& window, const Array<int>& offset, const Array<double>& terminal_gain,
           std::vector<GpuInput> gpus, bool strengthen, bool break_symmetry, int retrain_instances,
           const Array<double>& floor, double floor_weight, const Array<double>& served_elsewhere) {
            PlanInput in;
            in.n_tenants = n_tenants;
            in.slot_s = slot_s;
            in.periods = to_vector(periods);
            in.setup_s = setup_s;
            in.penalty = penalty;
            in.arrivals = to_vector(arrivals);
            in.acc_before = to_vector(acc_before);
            in.acc_after = to_vector(acc_after);
            in.work_left = to_vector(work_left);
            in.work_full = to_vector(work_full);
            in.done0 = to_vector(done0);
            in.window = to_vector(window);
            in.offset = to_vector(offset);
            in.terminal_gain = to_vector(terminal_gain);
            in.gpus = std::move(gpus);
            in.strengthen = strengthen;
            in.break_symmetry = break_symmetry;
            in.retrain_instances = retrain_instances;
            in.floor = to_vector(floor);
            in.floor_weight = floor_weight;
            in.served_elsewhere = to_vector(served_elsewhere);
            py::gil_scoped_release release;
            return build_plan_model(in);
        },
        py::arg("n_tenants"), py::arg("slot_s"), py::arg("periods"), py::arg("setup_s"),
        py::arg("penalty"), py::arg("arrivals"), py::arg("acc_before"), py::arg("acc_after"),
        py::arg("work_left"), py::arg("work_full"), py::arg("done0"), py::arg("window"),
        py::arg("offset"), py::arg("terminal_gain"), py::arg("gpus"), py::arg("strengthen") = true, py::arg("break_symmetry") = true,
        py::arg("retrain_instances") = 0, py::arg("floor") = py::array_t<double>(0), py::arg("floor_weight") = 0.0,
        py::arg("served_elsewhere") = py::array_t<double>(0),
        "Build the planning program of docs/model.md.");

    m.def("maximal_layouts", &maximal_layouts, py::arg("gpu"),
          "Maximal valid sets of the GPU's placements, as sorted placement indices.");

    m.def(
        "best_pattern",
        [](const GpuInput& gpu, int n_tenants, const Array<double>& accuracy, const Array<double>& arrivals,
           double slot_s, double penalty) {
            const auto acc = to_vector(accuracy);
            const auto arr = to_vector(arrivals);
            if (n_tenants < 1 || arr.size() % n_tenants != 0 || acc.size() != arr.size())
                throw std::invalid_argument("accuracy and arrivals must both be n_tenants x slots");
            const int slots = static_cast<int>(arr.size()) / n_tenants;
            Pattern best;
            {
                py::gil_scoped_release release;
                best = PatternSearch(gpu, n_tenants).best(acc, arr, slots, 0, slots, slot_s, {}, penalty);
            }
            return py::make_tuple(best.value, to_numpy(std::move(best.task)));
        },
        py::arg("gpu"), py::arg("n_tenants"), py::arg("accuracy"), py::arg("arrivals"), py::arg("slot_s"),
        py::arg("penalty") = 0.0,
        "The most Goodput one GPU earns over the slots, less `penalty` per instance not already\n"
        "serving its tenant, and each placement's inference task (-1: none).");

    m.def(
        "best_timeline",
        [](const std::vector<std::vector<int>>& layouts, int periods, int placements, int tasks,
           const Array<double>& value, const Array<int>& current, double penalty) {
            const auto v = to_vector(value);
            const auto now = to_vector(current);
            Timeline best;
            {
                py::gil_scoped_release release;
                best = best_timeline(layouts, periods, placements, tasks, v, now, penalty);
            }
            return py::make_tuple(best.value, to_numpy(std::move(best.task)));
        },
        py::arg("layouts"), py::arg("periods"), py::arg("placements"), py::arg("tasks"), py::arg("value"),
        py::arg("current"), py::arg("penalty"),
        "One GPU's best timeline: its value and the task per period and placement (-1: none),\n"
        "flat (periods x placements). `value` is (periods + 1) x periods x placements x tasks:\n"
        "what an instance earns in a period by the period its run started (-1 first).");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "migrator's C++ core (private: use the migrator package).";
    bind_geometry(m);
    bind_ilp(m);
}
