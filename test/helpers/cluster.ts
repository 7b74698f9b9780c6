/** The end-to-end suites' cluster: the demo's LocalCluster, under the name the suites use. */
export {
  guestImageManifest,
  LocalCluster as TestCluster,
  qemuPidsUnder,
  ROOT,
} from "../../src/demo/local-cluster.js";
