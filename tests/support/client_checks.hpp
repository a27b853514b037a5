// Checks the tests of the client's tools share: an exit status with the output that explains it,
// and the fields of `bench --json`.
#pragma once

#include "process.hpp"

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <boost/test/unit_test.hpp>

#include <sstream>
#include <string>

namespace uds_echo::test {

inline void check_exit(const RunResult& result, int code) {
    BOOST_TEST(result.status.exited_with(code), "exit " << result.status << ", expected " << code
                                                        << "; stdout: " << result.out
                                                        << "; stderr: " << result.err);
}

inline boost::property_tree::ptree parse_json(const std::string& text) {
    std::istringstream in(text);
    boost::property_tree::ptree tree;
    boost::property_tree::read_json(in, tree);
    return tree;
}

// Numbers are read as text: property_tree's numeric translator trips g++ 12's
// -Wmaybe-uninitialized in sanitizer builds.
inline long long json_integer(const boost::property_tree::ptree& json, const std::string& key) {
    return std::stoll(json.get<std::string>(key));
}

} // namespace uds_echo::test
