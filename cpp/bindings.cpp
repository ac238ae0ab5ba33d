// The only file that includes pybind11: one bind_<area>(m) per C++ area.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "migrator/geometry.hpp"

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

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "migrator's C++ core (private: use the migrator package).";
    bind_geometry(m);
}
